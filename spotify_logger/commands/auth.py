"""`spotify-logger auth`: the one-time authorization, or storing a refresh token you already hold.

The URL is always printed; a browser is opened only when asked for (no --no-browser) and a
graphical one exists, never a text browser that would take over an SSH session.
"""

from __future__ import annotations

import argparse
import queue
import sys
import webbrowser
from datetime import datetime, timezone
from typing import TextIO

import requests

from ..authflow import AuthRequest, exchange_code, missing_scopes, new_request, parse_scopes
from ..callback import Outcome, listen, wait_for_code
from ..config import Settings
from ..errors import BadInput
from ..tokenstore import REFRESH_TOKEN_LIFETIME_S, Tokens, TokenStore

DEFAULT_TIMEOUT_S = 600.0


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-browser", action="store_true",
                   help="do not open a browser: print the URL, then paste the redirected address (or code)")
    p.add_argument("--scope", action="append", metavar="SCOPES",
                   help="scopes to ask for, space- or comma-separated, repeatable (default: the ones the logger uses)")
    p.add_argument("--refresh-token", metavar="TOKEN", help="store a refresh token you already have")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"give up after this long (default {DEFAULT_TIMEOUT_S:g})")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    if args.refresh_token is not None:
        return _store_refresh_token(args.refresh_token, settings)
    if not args.timeout > 0:
        raise BadInput("--timeout must be a positive number of seconds")
    request = new_request(settings, parse_scopes(args.scope))
    tokens = authorize(settings, request, stdin=sys.stdin, out=sys.stdout, notes=sys.stderr,
                       timeout_s=args.timeout, open_browser=not args.no_browser)
    store = TokenStore(settings.token_file)
    with store.refresh_lock():  # never between a running poller's refresh and its save
        store.save(tokens)
    _report(tokens, request, store, sys.stdout)
    return 0


def authorize(settings: Settings, request: AuthRequest, *, stdin: TextIO | None, out: TextIO, notes: TextIO,
              timeout_s: float = DEFAULT_TIMEOUT_S, open_browser: bool = False, listen_for_callback: bool = True,
              session: requests.Session | None = None) -> Tokens:
    """Print the URL, wait for the first answer (callback or paste), and exchange its code."""
    outcomes: "queue.Queue[Outcome]" = queue.Queue()
    # Listening before the URL is shown: a fast browser must find the server already there.
    server = listen(request, outcomes, notes) if listen_for_callback else None
    print("Open this URL in a browser, log in to Spotify and allow access:\n", file=out)
    print(f"  {request.url}\n", file=out)
    if server is not None:
        print(f"When Spotify sends the browser on to {request.redirect.uri}, this finishes by itself.", file=out)
    print("If that page does not load (the browser is on another machine), copy the whole address from\n"
          "the browser's address bar, paste it here and press Enter (the bare code works too):", file=out, flush=True)
    if open_browser and _open_graphical_browser(request.url):
        print("(opened your browser)", file=notes, flush=True)
    outcome = wait_for_code(request, outcomes, server=server, stdin=stdin, notes=notes, timeout_s=timeout_s)
    return exchange_code(settings, request, outcome.code or "", session=session)


def _open_graphical_browser(url: str) -> bool:
    """webbrowser finds graphical browsers only when a display exists; a text browser (lynx, w3m,
    elinks, $BROWSER) would take over the terminal of a headless Pi, so those are skipped."""
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    if type(browser) is webbrowser.GenericBrowser:
        return False
    if isinstance(browser, webbrowser.UnixBrowser) and not browser.background:
        return False
    try:
        return bool(browser.open(url, new=2))
    except Exception:  # noqa: BLE001 - opening a browser is a convenience; the URL is printed anyway
        return False


def _report(tokens: Tokens, request: AuthRequest, store: TokenStore, out: TextIO) -> None:
    print(f"\nAuthorized. The token is saved in {store.path} (mode 0600).", file=out)
    missing = missing_scopes(tokens, request)
    if missing:
        print(f"Note: Spotify did not grant {' '.join(missing)}; features that need it will fail.", file=out)
    if tokens.authorized_at is not None:
        renew = datetime.fromtimestamp(tokens.authorized_at + REFRESH_TOKEN_LIFETIME_S, timezone.utc)
        print(f"Spotify ends refresh tokens 6 months after authorization: run `spotify-logger auth` "
              f"again before {renew:%Y-%m-%d} (`status` warns a month ahead).", file=out)
    print("Start (or restart) the poller now: python run.py", file=out, flush=True)


def _store_refresh_token(raw: str, settings: Settings) -> int:
    token = raw.strip()
    if not token or any(c.isspace() for c in token):
        raise BadInput("--refresh-token must be a single token with no spaces")
    store = TokenStore(settings.token_file)
    # When it was authorized is unknown, so authorized_at stays empty rather than guessed.
    with store.refresh_lock():
        store.save(Tokens(refresh_token=token, refreshed_at=None, authorized_at=None))
    print(f"stored the refresh token in {store.path} (mode 0600); when it is first used, spotify-logger refreshes it")
    print("its age is unknown, so `status` cannot warn before it expires: prefer `spotify-logger auth`",
          file=sys.stderr)
    return 0
