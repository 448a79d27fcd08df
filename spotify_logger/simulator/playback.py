"""Handlers for GET /me/player, /me/player/currently-playing and /me/player/devices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .http_types import Request, Response, json_response, no_content
from .objects import context_object, device_object, item_object, show_uri
from .script import Play
from .timeline import PlayerState

if TYPE_CHECKING:
    from .simulator import SpotifySimulator

# Flags the real API puts in actions.disallows while an ad plays.
_AD_DISALLOWS = ("seeking", "skipping_next", "skipping_prev", "toggling_repeat_context",
                 "toggling_repeat_track", "toggling_shuffle")


def context_uri_for(play: Play, script_context: str | None) -> str | None:
    if play.context_uri is not None:
        return play.context_uri or None  # "" forces a null context
    if play.item.kind == "episode":
        return show_uri(play.item)
    return script_context


def _wants_episodes(request: Request) -> bool:
    types = request.query.get("additional_types", "")
    return "episode" in (t.strip() for t in types.split(","))


def _playing_type(play: Play) -> str:
    kind = play.item.kind
    return "track" if kind == "local" else kind


def _item(play: Play, request: Request) -> dict[str, Any] | None:
    # The real API hides the item in private sessions, and episodes unless asked for.
    if play.private:
        return None
    if play.item.kind == "episode" and not _wants_episodes(request):
        return None
    return item_object(play.item)


def _disallows(state: PlayerState) -> dict[str, bool]:
    flags = {"resuming": True} if state.playing else {"pausing": True}
    if state.play.item.kind == "ad":
        flags.update(dict.fromkeys(_AD_DISALLOWS, True))
    return dict(sorted(flags.items()))


def _body(sim: SpotifySimulator, request: Request, with_device: bool) -> Response:
    now = sim.playback_now()
    if now is None:
        return no_content()
    state, timestamp_ms = now
    play = state.play
    body: dict[str, Any] = {}
    if with_device:
        body["device"] = device_object(play.device, private=play.private)
        body["shuffle_state"] = False
        body["smart_shuffle"] = False
        body["repeat_state"] = "off"
    body.update({
        "timestamp": timestamp_ms,
        "context": context_object(context_uri_for(play, sim.script.context_uri)),
        "progress_ms": state.progress_ms,
        "item": _item(play, request),
        "currently_playing_type": _playing_type(play),
        "actions": {"disallows": _disallows(state)},
        "is_playing": state.playing,
    })
    return json_response(200, body)


def get_playback_state(sim: SpotifySimulator, request: Request) -> Response:
    return _body(sim, request, with_device=True)


def get_currently_playing(sim: SpotifySimulator, request: Request) -> Response:
    return _body(sim, request, with_device=False)


def get_devices(sim: SpotifySimulator, request: Request) -> Response:
    now = sim.playback_now()
    active = now[0].play.device if now else None
    names = dict.fromkeys(s.device for s in sim.script.segments if isinstance(s, Play))
    devices = [device_object(name, active=name == active,
                             private=bool(now and name == active and now[0].play.private))
               for name in names]
    return json_response(200, {"devices": devices})
