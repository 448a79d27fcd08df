"""spotify-logger: record every Spotify play into Redis, one hash per play."""

__version__ = "0.1.0"
