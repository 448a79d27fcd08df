"""Shared helpers for the bench scripts: a throwaway redis-server in a temporary directory, a
simulator wired to settings, a realistic catalogue, and /proc readings of another process."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/NAME.py` from a checkout without an install
    sys.path.insert(0, str(ROOT))

from spotify_logger.config import Settings  # noqa: E402
from spotify_logger.redisproc import RedisServer  # noqa: E402
from spotify_logger.tokenstore import Tokens, TokenStore  # noqa: E402

if TYPE_CHECKING:  # the simulator is imported where it is used: a measured child must not load it
    from spotify_logger.simulator import SpotifySimulator
    from spotify_logger.simulator.items import Item

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


@contextlib.contextmanager
def redis_server(prefix: str) -> Iterator[tuple[Path, RedisServer]]:
    """A temporary directory and a redis-server keeping its data there; both gone afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"spotify-logger-bench-{prefix}-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            yield Path(tmp), server
        finally:
            server.stop(save=False)


def settings_for(sim: "SpotifySimulator", redis_url: str, state_dir: Path, **overrides: Any) -> Settings:
    """Settings pointed at the simulator, with a token file in place (as `auth` would leave it)."""
    base = Settings(client_id=sim.client_id, client_secret=sim.client_secret, api_url=sim.api_url,
                    accounts_url=sim.accounts_url, redis_url=redis_url, state_dir=state_dir,
                    log_format="json", log_level="info")
    settings = dataclasses.replace(base, **overrides)
    TokenStore(settings.token_file).save(Tokens(refresh_token=sim.current_refresh_token,
                                                authorized_at=time.time()))
    return settings


def env_for(settings: Settings) -> dict[str, str]:
    """The environment that makes `python -m spotify_logger run` use these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "REDIS_URL", "NOTIFY_SOCKET"))}
    env.update(settings.to_env(), PYTHONPATH=str(ROOT))  # every setting, so nothing drifts from Settings
    return env


# --- a realistic catalogue ------------------------------------------------------------------
# No offline statistic of real catalogue names exists here, so the mix is an explicit assumption,
# set from what real listening histories look like: mostly short names and one artist, a tail of
# "feat."/remaster/live suffixes, some classical titles and long podcast episode titles.

_WORDS = ("love night heart fire dream light rain summer blue gold wild city river home road "
          "ghost dance echo shadow ocean golden broken electric midnight paper silver stars "
          "forever young lonely sweet cold running falling wolves thunder dynamite heaven "
          "tonight without together again storm glass moon sun desert").split()
_SUFFIXES = ((0.08, " - Remastered 2011"), (0.04, " - Radio Edit"), (0.04, " - Live at Wembley Stadium"),
             (0.03, " - 2015 Remaster"), (0.02, " - Acoustic Version"))
_CLASSICAL = ("Symphony No. {n} in {key}, Op. {op}: {mv}. Allegro con brio",
              "Piano Sonata No. {n} in {key}, Op. {op} \"Pathetique\": {mv}. Adagio cantabile",
              "Cello Suite No. {n} in {key}, BWV {op}: {mv}. Prelude")
_KEYS = ("C Minor", "D Major", "E-Flat Major", "A Minor", "G Major", "F-Sharp Minor")
_DEVICES = (("Living Room", "Speaker"), ("MacBook Pro", "Computer"), ("Pixel 8", "Smartphone"),
            ("Kitchen Echo Dot", "Speaker"), ("DESKTOP-7H3K2LQ", "Computer"))


def _title(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(w.capitalize() for w in rng.sample(_WORDS, rng.randint(lo, hi)))


def _artist(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return "The " + _title(rng, 1, 2)
    return _title(rng, 1, 2) if rng.random() < 0.6 else _title(rng, 1, 1) + " " + rng.choice(("Jones", "Kim", "Nakamura", "Okafor"))


def realistic_items(count: int, seed: int = 6) -> list[Item]:
    """`count` distinct items: ~92 % tracks (1-4 artists), ~4 % classical, ~4 % podcast episodes."""
    from spotify_logger.simulator import episode, track
    rng = random.Random(seed)
    items: list[Item] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.04:
            show = _title(rng, 2, 4) + " Podcast"
            name = f"#{rng.randint(1, 400)} - {_title(rng, 1, 2)} {rng.choice(('Kim', 'Okafor', 'Novak'))} on {_title(rng, 3, 6)}"
            items.append(episode(name, rng.randint(20, 90) * 60_000, show=show, uri=None))
            continue
        if roll < 0.08:
            name = rng.choice(_CLASSICAL).format(n=rng.randint(1, 9), key=rng.choice(_KEYS),
                                                  op=rng.randint(10, 130), mv=rng.choice(("I", "II", "III")))
            artists: list[str] = [rng.choice(("Berliner Philharmoniker", "Yo-Yo Ma", "Daniel Barenboim")),
                                  "Herbert von Karajan"][: rng.randint(1, 2)]
            album = f"{name.split(':')[0]} (Remastered)"
            items.append(track(name, rng.randint(240, 720) * 1000, artists, album))
            continue
        name = _title(rng, 1, 4)
        for chance, suffix in _SUFFIXES:
            if rng.random() < chance:
                name += suffix
                break
        weights = rng.random()
        n_artists = 1 if weights < 0.70 else 2 if weights < 0.90 else 3 if weights < 0.97 else 4
        artists = [_artist(rng) for _ in range(n_artists)]
        if n_artists > 1 and rng.random() < 0.5:
            name += f" (feat. {artists[1]})"
        album = _title(rng, 1, 3) + (" (Deluxe Edition)" if rng.random() < 0.1 else "")
        duration = int(max(90_000, min(480_000, rng.gauss(215_000, 50_000))))
        items.append(track(f"{name}", duration, artists, album, uri=None, explicit=rng.random() < 0.2))
    # Names repeat across the catalogue (a title is not unique): keep every uri distinct.
    return _distinct(items)


def _distinct(items: list[Item]) -> list[Item]:
    from spotify_logger.simulator.items import fake_id
    seen: set[str] = set()
    out = []
    for index, item in enumerate(items):
        if item.uri in seen:
            prefix = item.uri.rsplit(":", 1)[0]
            item = dataclasses.replace(item, uri=f"{prefix}:{fake_id(f'{item.uri}#{index}')}")
        seen.add(item.uri)
        out.append(item)
    return out


def devices() -> tuple[tuple[str, str], ...]:
    return _DEVICES


# --- another process, seen through /proc ----------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def redis_version(client: Any) -> str:
    return str(client.info("server").get("redis_version", "?"))
