"""Spotify's request limits as of 2026: the app's rolling quota and the 30 s burst limit.

Both count the app's Web API requests (every user and process of the client id) over a rolling
window. When full, a request gets 429 with a Retry-After lasting until the window frees a call;
the quota's body carries `reason: QUOTA_EXCEEDED`, the burst limit's does not. A request sent
before a Retry-After it was told has passed is counted in the window although it is refused,
so a client that keeps calling keeps the window full: the penalty grows, as Spotify's does.

The windows are in the simulator clock's seconds. Tests and benches that compress time divide
them by the same factor as everything else: QuotaRule.parse("1000/86400").scaled(60).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

from .faults import retry_after_deadline, retry_after_header
from .http_types import Response, api_error, json_response

QUOTA_BODY = {"error": {"status": 429, "message": "Too many requests", "reason": "QUOTA_EXCEEDED"}}
BURST_WINDOW_S = 30.0


@dataclass(frozen=True)
class QuotaRule:
    limit: int          # requests admitted per window
    window_s: float

    def __post_init__(self) -> None:
        if self.limit < 1 or not self.window_s > 0:
            raise ValueError("a quota needs limit >= 1 and window_s > 0")

    @classmethod
    def parse(cls, text: str) -> QuotaRule:
        """`1000/86400`: 1000 requests per rolling 86400 s."""
        try:
            limit, window = text.split("/")
            return cls(int(limit), float(window))
        except ValueError:
            raise ValueError(f"{text!r} is not LIMIT/SECONDS, such as 1000/86400") from None

    def scaled(self, factor: float) -> QuotaRule:
        """The same limit over a window `factor` times shorter (time compressed by `factor`)."""
        return QuotaRule(self.limit, self.window_s / factor)


class RollingLimit:
    def __init__(self, rule: QuotaRule) -> None:
        self.rule = rule
        self._times: collections.deque[float] = collections.deque()
        self._told_until = float("-inf")
        self._lock = threading.Lock()

    def refuse(self, now: float) -> float | None:
        """Seconds of Retry-After if this request is refused (a refused request told nothing new
        is counted, see the module docstring); None if the window has room (not yet counted)."""
        with self._lock:
            self._prune(now)
            if now < self._told_until:
                self._times.append(now)
                self._told_until = max(self._told_until, self._free_at())
                return self._told_until - now
            if len(self._times) >= self.rule.limit:
                self._told_until = self._free_at()
                return self._told_until - now
            return None

    def admit(self, now: float) -> None:
        with self._lock:
            self._times.append(now)

    def used(self, now: float) -> int:
        with self._lock:
            self._prune(now)
            return len(self._times)

    def _prune(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.rule.window_s:
            self._times.popleft()

    def _free_at(self) -> float:
        # When the count drops below the limit: the (len - limit + 1)th oldest leaves.
        index = len(self._times) - self.rule.limit
        return self._times[index] + self.rule.window_s if index >= 0 else float("-inf")


class AppLimits:
    """The app's quota and burst limit, and the latest Retry-After told by any 429 (these, the
    penalty window or an injected fault), to count the requests sent before it passed."""

    def __init__(self, quota: QuotaRule | str | None = None, burst: QuotaRule | int | None = None) -> None:
        rule = QuotaRule.parse(quota) if isinstance(quota, str) else quota
        self.quota = RollingLimit(rule) if rule else None
        burst_rule = QuotaRule(burst, BURST_WINDOW_S) if isinstance(burst, int) else burst
        self.burst = RollingLimit(burst_rule) if burst_rule else None
        self._told_until = float("-inf")
        self._lock = threading.Lock()

    def during_retry_after(self, now: float) -> bool:
        with self._lock:
            return now < self._told_until

    def told(self, response: Response, now: float) -> None:
        """Note the Retry-After of a 429 the app is about to receive."""
        if response.status == 429:
            deadline = retry_after_deadline(response.headers.get("Retry-After"), now)
            with self._lock:
                self._told_until = max(self._told_until, deadline)

    def check(self, now: float) -> tuple[Response, str] | None:
        """A 429 and its kind ("quota", then "burst") if a limit refuses; None, and the request
        counted in both, if both admit it."""
        for limit, kind in ((self.quota, "quota"), (self.burst, "burst")):
            seconds = limit.refuse(now) if limit is not None else None
            if seconds is not None:
                headers = {"Retry-After": retry_after_header(seconds, now, False)}
                if kind == "quota":
                    return json_response(429, QUOTA_BODY, headers), kind
                return api_error(429, headers=headers), kind
        for admitting in (self.quota, self.burst):
            if admitting is not None:
                admitting.admit(now)
        return None
