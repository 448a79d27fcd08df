"""Every Redis key name and the play schema, in one place.

README.md documents these for redis-cli users; change both together.
"""

from __future__ import annotations

import hashlib

PLAY_PREFIX = "listening:"
INDEX = "listening:index"            # ZSET member=<started_at_ms> score=<started_at_ms>
CURRENT = "listening:current"        # STRING key of the open play, so a restart continues it
TRACK_COUNTS = "plays:tracks"        # ZSET member=uri score=counted plays
ARTIST_COUNTS = "plays:artists"      # ZSET member=artist name score=counted plays
STATUS = "spotify-logger:status"     # HASH last_poll_at, last_write_at (ms) for `status`
COOLDOWN = "spotify-logger:cooldown"  # STRING deadline (epoch s) before per-client cooldowns; read only
RECENT_CURSOR = "spotify-logger:recent_cursor"  # STRING newest recently-played played_at (ms)
GAPS = "gaps"                        # ZSET member=JSON{start,end,estimated_plays} score=start ms
PLAYLISTS = "spotify-logger:playlists"  # HASH playlist name -> Spotify playlist id
LEASE = "spotify-logger:poller"      # STRING JSON{id,pid,host,state_dir} of the recording poller, with a TTL

# Per client id, named by client_hash(): every process and account of one app shares them.
BUDGET_PREFIX = "spotify-logger:budget:"


def client_hash(client_id: str) -> str:
    """The client id as it appears in key names: a hash, so redis-cli never shows the id."""
    return hashlib.sha256(client_id.encode("utf-8")).hexdigest()[:16]


def budget_calls(client_id: str) -> str:
    """HASH field=<bucket>[:<origin>] value=Web API calls made in that time bucket (budget.py)."""
    return f"{BUDGET_PREFIX}{client_hash(client_id)}:calls"


def budget_endpoints(client_id: str) -> str:
    """HASH field=<hour>|<endpoint>[|<origin>] value=calls, the last 25 h (token refreshes too)."""
    return f"{BUDGET_PREFIX}{client_hash(client_id)}:endpoints"


def budget_learned(client_id: str) -> str:
    """STRING JSON{limit, learned_at, window_s}: the quota Spotify enforced, learned at a refusal."""
    return f"{BUDGET_PREFIX}{client_hash(client_id)}:learned"


def cooldown_key(client_id: str) -> str:
    """STRING JSON{until, reason}: the app's rate-limit or quota deadline, TTL to match."""
    return f"spotify-logger:cooldown:{client_hash(client_id)}"


def client_key_types(client_id: str) -> dict[str, str]:
    """The Redis type of each per-client key above, for the foreign-key check."""
    return {budget_calls(client_id): "hash", budget_endpoints(client_id): "hash",
            budget_learned(client_id): "string", cooldown_key(client_id): "string"}


def client_key_type(key: str) -> str | None:
    """The type of a per-client key of any client id (a script's KEYS name them), else None."""
    if key.startswith(BUDGET_PREFIX):
        return "string" if key.endswith(":learned") else "hash"
    if key.startswith("spotify-logger:cooldown:"):
        return "string"
    return None

# The fields of a play hash, in documentation order. Fields whose value is unknown are absent,
# never "None": Redis cannot store None and a missing field reads as nil in redis-cli.
PLAY_FIELDS: tuple[str, ...] = (
    "started_at", "last_seen_at", "ended_at", "ms_played", "progress_ms", "duration_ms",
    "type", "uri", "id", "name", "artists", "artist_ids", "album", "album_id", "show",
    "explicit", "is_local", "context_type", "context_uri", "device_name", "device_type",
    "device_volume", "shuffle_state", "repeat_state", "playing", "counted", "source",
    "confirmed_at", "import_ts",  # backfill's confirmation, and import's: never the other's
    # Extra fields a Spotify data-export import keeps when the record has them.
    "platform", "reason_start", "reason_end", "shuffle", "skipped", "offline", "incognito_mode",
)

# How each PLAY_FIELDS value is stored: integers in decimal (epoch ms, ms, percent), booleans
# "1"/"0", lists as JSON arrays; every other field is plain text.
INT_FIELDS = frozenset({"started_at", "last_seen_at", "ended_at", "ms_played", "progress_ms", "duration_ms",
                        "device_volume", "confirmed_at", "import_ts"})
BOOL_FIELDS = frozenset({"explicit", "is_local", "shuffle_state", "playing", "counted", "shuffle", "skipped",
                         "offline", "incognito_mode"})
LIST_FIELDS = frozenset({"artists", "artist_ids"})

# The values of `source`: who created the play.
SOURCE_POLL = "poll"                # the poller (/me/player)
SOURCE_FEED = "recently_played"     # backfill (/me/player/recently-played)
SOURCE_IMPORT = "import"            # `import` (Spotify's history export)


def int_field(raw: str | None) -> int | None:
    """An INT_FIELDS value as read from a hash; None when absent or damaged."""
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def play_key(started_at_ms: int) -> str:
    return f"{PLAY_PREFIX}{started_at_ms}"


def is_play_key(key: str) -> bool:
    return key.startswith(PLAY_PREFIX) and key[len(PLAY_PREFIX):].isdigit()


def started_at_of(key: str) -> int:
    return int(key[len(PLAY_PREFIX):])
