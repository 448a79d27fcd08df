from __future__ import annotations

import argparse

from ..config import Settings
from ..errors import BadInput
from ..tokenstore import Tokens, TokenStore


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("auth", help="authorize spotify-logger with your Spotify account")
    p.add_argument("--refresh-token", metavar="TOKEN", help="store a refresh token you already have")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    if not args.refresh_token:
        raise BadInput("give --refresh-token TOKEN (the browser flow comes with `auth` proper)")
    token = args.refresh_token.strip()
    if not token or any(c.isspace() for c in token):
        raise BadInput("--refresh-token must be a single token with no spaces")
    store = TokenStore(settings.token_file)
    store.save(Tokens(refresh_token=token, refreshed_at=None, authorized_at=None))
    print(f"stored the refresh token in {store.path} (mode 0600); when it is first used, spotify-logger refreshes it")
    return 0
