"""sd_notify over the unix datagram socket systemd gives us; a no-op without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import time
from typing import Mapping


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None, *, min_watchdog_gap_s: float = 1.0) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self.address = address or None
        self.min_watchdog_gap_s = min_watchdog_gap_s
        self._last_watchdog = 0.0

    def send(self, message: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode(), self.address)
            return True
        except OSError:
            return False  # systemd gone or socket odd: notification is best-effort by design

    def ready(self) -> None:
        # run.py stays the main PID; NotifyAccess=all lets this child's datagrams count. Start-up
        # (Redis wait, spool replay) was progress too: after a restart the watchdog is armed.
        self._last_watchdog = time.monotonic()
        self.send("READY=1\nWATCHDOG=1\nSTATUS=polling")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        # Called after every poll or backoff that made progress; rate-limited to spare syscalls.
        now = time.monotonic()
        if now - self._last_watchdog >= self.min_watchdog_gap_s:
            self._last_watchdog = now
            self.send("WATCHDOG=1")
