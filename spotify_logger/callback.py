"""How the authorization answer comes back: two ways at once, and the first to arrive wins.

(a) A one-shot HTTP server on the loopback address of the redirect URI receives the browser's
    redirect, answers "done, you can close this page" and stops.
(b) A paste reader takes the redirected URL (or the bare code) from stdin, for a Pi over SSH
    whose browser is on another machine.

An answer whose state is not ours is refused and the wait goes on: a stray or forged request
must not end the attempt the user is in the middle of.
"""

from __future__ import annotations

import html
import io
import os
import queue
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterator, TextIO
from urllib.parse import parse_qsl, urlsplit

from .authflow import AuthRequest, StateMismatch, code_from_params, code_from_paste
from .errors import AuthError, BadInput, SpotifyLoggerError

DONE_PAGE = ("spotify-logger is authorized", "Done: spotify-logger is authorized. You can close this page.")
_PASTE_POLL_S = 0.2


class AuthorizationTimeout(AuthError):
    """No answer arrived in time."""


@dataclass(frozen=True)
class Outcome:
    via: str                                  # "callback" or "paste"
    code: str | None = None
    error: SpotifyLoggerError | None = None   # fatal for the attempt (e.g. access_denied)
    closed: bool = False                      # the paste channel reached end of input


class CallbackServer:
    """One-shot: serves until one valid answer (a code or a Spotify error) has been received."""

    def __init__(self, request: AuthRequest, outcomes: "queue.Queue[Outcome]", notes: TextIO) -> None:
        self.request = request
        self.outcomes = outcomes
        self.notes = notes
        redirect = request.redirect
        server_class = _Server6 if ":" in redirect.host else _Server4
        # Bound to the loopback address of the redirect URI only: nothing off this machine can reach it.
        self.httpd = server_class((redirect.host, redirect.port), _Handler)
        self.httpd.owner = self
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="auth-callback", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> "CallbackServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(5)
        self.httpd.server_close()

    def answer(self, path: str, query: str) -> tuple[int, str, str]:
        """(status, title, message) for one GET; a valid answer is offered to the race."""
        if path != self.request.redirect.path:
            return 404, "Not found", "Nothing here."
        params = dict(parse_qsl(query, keep_blank_values=True))
        try:
            code = code_from_params(params, self.request)
        except StateMismatch as exc:
            print(f"spotify-logger: {exc}", file=self.notes, flush=True)
            return 400, "Refused", str(exc)
        except SpotifyLoggerError as exc:
            self.outcomes.put(Outcome("callback", error=exc))
            return 200, "Not authorized", str(exc)
        self.outcomes.put(Outcome("callback", code=code))
        return 200, *DONE_PAGE


class _Handler(BaseHTTPRequestHandler):
    server: "_Server4"
    timeout = 5  # a client that connects and says nothing must not hold the one-thread server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        split = urlsplit(self.path)
        status, title, message = self.server.owner.answer(split.path, split.query)
        page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"</head><body style=\"font-family:sans-serif;margin:3em\"><h1>{html.escape(title)}</h1>"
                f"<p>{html.escape(message)}</p></body></html>").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")  # the code must not leak onward
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # the query holds the code: never write request lines anywhere


class _Server4(HTTPServer):
    owner: CallbackServer


class _Server6(_Server4):
    address_family = socket.AF_INET6


def read_pastes(stream: TextIO, request: AuthRequest, outcomes: "queue.Queue[Outcome]", notes: TextIO,
                stop: threading.Event) -> None:
    """Offer the first usable pasted line; refused lines get one explanation and the wait goes on."""
    for line in _lines(stream, stop):
        try:
            code = code_from_paste(line, request)
        except BadInput as exc:  # a state mismatch or a line that is no answer: say so, keep reading
            print(f"spotify-logger: {exc}", file=notes, flush=True)
            continue
        except SpotifyLoggerError as exc:
            outcomes.put(Outcome("paste", error=exc))
            return
        if code is not None:
            outcomes.put(Outcome("paste", code=code))
            return
    outcomes.put(Outcome("paste", closed=True))


def _lines(stream: TextIO, stop: threading.Event) -> Iterator[str]:
    """Lines of a real file descriptor, read so that a stop request ends the wait within 0.2 s;
    any other stream (a StringIO in tests) is simply iterated."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        yield from stream
        return
    buffered = b""
    while not stop.is_set():
        try:
            ready, _, _ = select.select([fd], [], [], _PASTE_POLL_S)
            chunk = os.read(fd, 65536) if ready else None
        except OSError:
            return
        if chunk is None:
            continue
        if not chunk:
            break
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            yield line.decode("utf-8", "replace")
    if buffered and not stop.is_set():
        yield buffered.decode("utf-8", "replace")


def listen(request: AuthRequest, outcomes: "queue.Queue[Outcome]", notes: TextIO) -> CallbackServer | None:
    """Start the callback server when the redirect URI allows one; otherwise pasting still works."""
    redirect = request.redirect
    if not redirect.listenable:
        print(f"spotify-logger: {redirect.uri} is https, so no local server can receive it: "
              "paste the address your browser is sent to", file=notes, flush=True)
        return None
    try:
        return CallbackServer(request, outcomes, notes).start()
    except OSError as exc:
        print(f"spotify-logger: cannot listen on {redirect.host}:{redirect.port} ({exc.strerror or exc}): "
              "paste the address your browser is sent to instead", file=notes, flush=True)
        return None


def wait_for_code(request: AuthRequest, outcomes: "queue.Queue[Outcome]", *, server: CallbackServer | None,
                  stdin: TextIO | None, notes: TextIO, timeout_s: float) -> Outcome:
    """Race the callback server (if any) against pasted input (if any); the first answer wins.
    The server is stopped on the way out, whatever happened."""
    stop = threading.Event()
    pasting = stdin is not None
    if pasting:
        threading.Thread(target=read_pastes, args=(stdin, request, outcomes, notes, stop),
                         name="auth-paste", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if server is None and not pasting:
                raise AuthError("no way left to receive the answer: stdin is closed and no callback "
                                "server is listening; run `spotify-logger auth` again in a terminal")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AuthorizationTimeout(f"no authorization arrived within {timeout_s:g}s: "
                                           "run `spotify-logger auth` again")
            try:
                outcome = outcomes.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if outcome.closed:
                pasting = False
                continue
            if outcome.error is not None:
                raise outcome.error
            return outcome
    finally:
        stop.set()
        if server is not None:
            server.stop()
