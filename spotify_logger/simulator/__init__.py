"""A Spotify Web API and accounts-service simulator on a real loopback HTTP server.

Standard library only. State is computed from a scripted timeline and a clock, so tests
can drive it with a fake clock; faults and rate limits can be injected at will.
"""

from .faults import Fault
from .items import Item, ad, episode, local_file, track
from .reqlog import RecordedRequest
from .script import Idle, Pause, Play, Resume, Script, Seek
from .simulator import SpotifySimulator

__all__ = [
    "Item", "Play", "Pause", "Resume", "Seek", "Idle", "Script",
    "Fault", "SpotifySimulator", "RecordedRequest",
    "track", "episode", "local_file", "ad",
]
