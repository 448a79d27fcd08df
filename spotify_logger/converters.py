"""Converters for the settings table (config._VARIABLES): each turns one raw string into a value
or raises ValueError with a one-line reason; the caller names the variable.

Ranges are declared where the variable is (`seconds(1, 3600)`), so the README table, the error
message and the check cannot drift apart. Every bound is finite: a setting is used in time
arithmetic, socket timeouts and int(ms) conversions, where inf, nan or 1e308 would end as an
OverflowError deep inside a poll instead of exit 78 at start.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import SplitResult, parse_qsl, urlsplit

# Floors measured in real time (a second between polls, a minute between reconciliations) are
# there for Spotify's rate limits and a Pi's CPU. Against an API on a loopback address, which is
# the simulator (tests, benchmarks, a demo in compressed time), they drop to this.
COMPRESSED_FLOOR_S = 0.001
MAX_REDIS_DB = 2**31 - 1  # Redis keeps `databases` in a C int; SELECT beyond it is never valid


def number_text(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Seconds:
    """A duration in seconds, lo <= value <= hi (lo applies to a remote API; see COMPRESSED_FLOOR_S)."""

    lo: float
    hi: float
    loopback_lo: float = COMPRESSED_FLOOR_S  # the floor against a loopback API

    @property
    def floor(self) -> float:
        return min(self.lo, self.loopback_lo)

    @property
    def range_text(self) -> str:
        return f"from {number_text(self.lo)} to {number_text(self.hi)} seconds"

    def __call__(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("expected a number of seconds, such as 5 or 2.5") from None
        if not (math.isfinite(value) and self.floor <= value <= self.hi):
            raise ValueError(f"must be {self.range_text}")
        return value


@dataclass(frozen=True)
class Whole:
    """A whole number, lo <= value <= hi, in `unit` (named in the message)."""

    lo: int
    hi: int
    unit: str = ""

    def __call__(self, raw: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]+", raw):
            raise ValueError("expected a whole number")
        value = int(raw) if len(raw) <= 20 else self.hi + 1  # no 4,000-digit int() on a typo
        if not self.lo <= value <= self.hi:
            raise ValueError(f"must be from {self.lo} to {self.hi}{' ' + self.unit if self.unit else ''}")
        return value


def seconds(lo: float, hi: float, *, loopback_lo: float = COMPRESSED_FLOOR_S) -> Seconds:
    return Seconds(float(lo), float(hi), float(loopback_lo))


def whole(lo: int, hi: int, unit: str = "") -> Whole:
    return Whole(lo, hi, unit)


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_url(raw: str) -> str:
    _printable(raw)
    parts = _split(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    _host_and_port(parts.netloc, required=True)
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise ValueError("a base URL takes no ?query or #fragment")
    return raw.rstrip("/")


def _boolean(raw: str) -> str:
    if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "y", "n", "on", "off"):
        raise ValueError("expected true or false")
    return raw


def _choice(*words: str) -> Callable[[str], str]:
    def check(raw: str) -> str:
        if raw.lower() not in words:
            raise ValueError(f"expected {' or '.join(words)}")
        return raw
    return check


def _text(raw: str) -> str:
    if not raw:
        raise ValueError("is empty")
    return raw


def _client_name(raw: str) -> str:
    # Redis's own rule for CLIENT SETNAME, which redis-py sends on every connect: refused there,
    # it was a "Redis error" at the first command, exit 70 and a restart loop.
    _text(raw)
    if not all("!" <= c <= "~" for c in raw):
        raise ValueError("Redis takes a client name of printable ASCII with no spaces")
    return raw


_ANY, _TCP, _TLS = ("redis", "rediss", "unix"), ("redis", "rediss"), ("rediss",)
# The query options of a Redis URL that redis-py reads, with their checks and the schemes whose
# connection takes them. Any other would reach redis-py's Connection() as an unknown keyword: a
# TypeError at the first command.
_REDIS_OPTIONS: dict[str, tuple[Callable[[str], object], tuple[str, ...]]] = {
    "db": (Whole(0, MAX_REDIS_DB), _ANY),
    "socket_timeout": (seconds(0.1, 300), _ANY),
    "socket_connect_timeout": (seconds(0.1, 300), _ANY),
    "health_check_interval": (Whole(0, 86_400, "seconds"), _ANY),
    "retry_on_timeout": (_boolean, _ANY),
    "client_name": (_client_name, _ANY),
    "socket_keepalive": (_boolean, _TCP),
    "ssl_cert_reqs": (_choice("none", "optional", "required"), _TLS),
    "ssl_check_hostname": (_boolean, _TLS),
    "ssl_ca_certs": (_text, _TLS),
    "ssl_certfile": (_text, _TLS),
    "ssl_keyfile": (_text, _TLS),
}


def redis_url(raw: str) -> str:
    _printable(raw)
    parts = _split(raw)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected redis://host:port/db, rediss:// or unix://")
    if parts.scheme != "unix":
        _host_and_port(parts.netloc, required=False)
        db = parts.path.lstrip("/")
        if db and not (db.isascii() and db.isdigit()):
            raise ValueError("the database after the / must be a number, such as /0")
        if db and int(db) > MAX_REDIS_DB:  # ascii digits: no exotic int() input
            raise ValueError(f"the database after the / must be from 0 to {MAX_REDIS_DB}")
    elif not parts.path:
        raise ValueError("expected unix:///path/to/redis.sock")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        _redis_option(parts.scheme, name, value)
    return raw


def _redis_option(scheme: str, name: str, value: str) -> None:
    # The value is never echoed: whatever follows the ? may be as secret as the password.
    check, schemes = _REDIS_OPTIONS.get(name, (None, ()))
    if check is None:
        raise ValueError(f"unsupported option {name[:40]!r} (supported: {', '.join(_REDIS_OPTIONS)})")
    if scheme not in schemes:
        raise ValueError(f"option {name} needs {' or '.join(f'{s}://' for s in schemes)}")
    try:
        # redis-py sends a name as it is; a number or a flag it strips.
        check(value if check is _client_name else value.strip())
    except ValueError as exc:
        raise ValueError(f"option {name}: {exc}") from None


def _printable(raw: str) -> None:
    # urlsplit silently drops tabs and newlines and keeps spaces: neither is in a usable URL.
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise ValueError("a URL has no spaces or control characters (write a space in a password as %20)")


def _split(raw: str) -> SplitResult:
    try:
        return urlsplit(raw)
    except ValueError:  # "Invalid IPv6 URL" and kin
        raise ValueError("not a well-formed URL") from None


_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def _host_and_port(netloc: str, *, required: bool) -> None:
    hostport = netloc.rpartition("@")[2]  # the password may hold anything: never look at it
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError("not a well-formed URL")
        port = rest[1:] if rest else ""
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise ValueError(f"[{host}] is not an IPv6 address") from None
    else:
        host, _, port = hostport.partition(":")
        if host or required:
            _hostname(host)
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError("the port is not a number from 1 to 65535")


def _hostname(host: str) -> None:
    try:
        ascii_host = host.encode("idna").decode("ascii") if host else ""
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host.rstrip(".").split(".")
    if not ascii_host or len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{host[:80]!r} is not a host name or IP address")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(ascii_host.rstrip("."))
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv4 address") from None
