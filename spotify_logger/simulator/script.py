"""Timeline scripting: segments played in order, and their JSON form for `simulate --script`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from .items import Item, item_from_json, item_to_json

DEFAULT_CONTEXT_URI = "spotify:playlist:37i9dQZF1DXcBWIGoYBM5M"
DEFAULT_DEVICE = "Sim Speaker"


@dataclass(frozen=True)
class Play:
    """Load `item` at `start_ms` and play it for `ms` of wall-clock time."""

    item: Item
    ms: int
    start_ms: int = 0
    private: bool = False
    device: str = DEFAULT_DEVICE
    context_uri: str | None = None  # None: the script's context (an episode's show for episodes)
    played_at_offset_ms: int = 0  # shifts the recently-played timestamp, like Spotify's drift


@dataclass(frozen=True)
class Pause:
    ms: int


@dataclass(frozen=True)
class Resume:
    ms: int


@dataclass(frozen=True)
class Seek:
    to_ms: int


@dataclass(frozen=True)
class Idle:
    ms: int


Segment = Union[Play, Pause, Resume, Seek, Idle]  # Union: evaluated at import, and 3.9 has no `|` for types


@dataclass(frozen=True)
class Script:
    segments: tuple[Segment, ...] = field(default_factory=tuple)
    loop: bool = False
    context_uri: str | None = DEFAULT_CONTEXT_URI

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.segments))
        _check(self.segments)

    @property
    def length_ms(self) -> int:
        return sum(_length(s) for s in self.segments)

    @classmethod
    def from_json(cls, obj: Any) -> Script:
        """Accept a bare segment list or {"segments": [...], "loop": bool, "context_uri": str}."""
        if isinstance(obj, list):
            return cls(tuple(_segment_from_json(s) for s in obj))
        if isinstance(obj, dict) and isinstance(obj.get("segments"), list):
            return cls(
                tuple(_segment_from_json(s) for s in obj["segments"]),
                loop=bool(obj.get("loop", False)),
                context_uri=obj.get("context_uri", DEFAULT_CONTEXT_URI),
            )
        raise ValueError("a script is a list of segments or an object with 'segments'")

    def to_json(self) -> dict[str, Any]:
        return {
            "loop": self.loop,
            "context_uri": self.context_uri,
            "segments": [_segment_to_json(s) for s in self.segments],
        }


def _length(segment: Segment) -> int:
    return 0 if isinstance(segment, Seek) else segment.ms


def _check(segments: tuple[Segment, ...]) -> None:
    # Catch script mistakes early: Pause/Resume/Seek need an item loaded by an earlier Play.
    loaded = False
    for index, seg in enumerate(segments):
        if not isinstance(seg, (Play, Pause, Resume, Seek, Idle)):
            raise TypeError(f"segment {index} is not a timeline segment: {seg!r}")
        if _length(seg) < 0:
            raise ValueError(f"segment {index} has a negative length")
        if isinstance(seg, Play):
            if not 0 <= seg.start_ms <= seg.item.duration_ms:
                raise ValueError(f"segment {index}: start_ms outside the item")
            loaded = True
        elif isinstance(seg, Idle):
            loaded = False
        elif not loaded:
            raise ValueError(f"segment {index}: {type(seg).__name__} with nothing loaded")
        if isinstance(seg, Seek) and seg.to_ms < 0:
            raise ValueError(f"segment {index}: seek before 0")


def _segment_from_json(obj: Any) -> Segment:
    try:
        return _parse_segment(obj)
    except (KeyError, TypeError, OverflowError) as exc:  # OverflowError: int() of 1e400, which JSON reads as inf
        raise ValueError(f"bad segment {obj!r}: {exc!r}") from exc


def _parse_segment(obj: Any) -> Segment:
    if not isinstance(obj, dict):
        raise ValueError(f"a segment is an object, got {obj!r}")
    if "play" in obj:
        item = item_from_json(obj["play"])
        return Play(
            item,
            int(obj.get("ms", item.duration_ms)),
            start_ms=int(obj.get("start_ms", 0)),
            private=bool(obj.get("private", False)),
            device=str(obj.get("device", DEFAULT_DEVICE)),
            context_uri=obj.get("context_uri"),
            played_at_offset_ms=int(obj.get("played_at_offset_ms", 0)),
        )
    for key, kind in (("pause", Pause), ("resume", Resume), ("idle", Idle)):
        if key in obj:
            return kind(int(obj[key]))
    if "seek" in obj:
        return Seek(int(obj["seek"]))
    raise ValueError(f"unknown segment {obj!r}")


def _segment_to_json(seg: Segment) -> dict[str, Any]:
    if isinstance(seg, Play):
        out: dict[str, Any] = {"play": item_to_json(seg.item), "ms": seg.ms}
        if seg.start_ms:
            out["start_ms"] = seg.start_ms
        if seg.private:
            out["private"] = True
        if seg.device != DEFAULT_DEVICE:
            out["device"] = seg.device
        if seg.context_uri is not None:
            out["context_uri"] = seg.context_uri
        if seg.played_at_offset_ms:
            out["played_at_offset_ms"] = seg.played_at_offset_ms
        return out
    if isinstance(seg, Seek):
        return {"seek": seg.to_ms}
    return {type(seg).__name__.lower(): seg.ms}
