"""Test helpers for the simulator: reference data in ../shared, a tiny OpenAPI checker, clocks."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import secrets
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import yaml

from spotify_logger.simulator import (Fault, Idle, Pause, Play, Resume, Seek, SpotifySimulator,
                                      ad, track)

from conftest import recorded, shared_file

T0 = 1_700_000_000.0  # fake clock start, seconds
T0_MS = int(T0 * 1000)
CB = "http://127.0.0.1:8888/callback"
SONG, OTHER = track("Song", 20000), track("Other", 30000, ("A", "B"), "LP")
# Null where real local-file bodies have null (README: local files), which the spec lacks.
LOCAL_NULLS = frozenset({"id", "href", "uri", "album_type", "release_date",
                         "release_date_precision"})
_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,),
}


class FakeClock:
    """A clock the test sets: call it for the time, advance() or at() to move it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def at(self, seconds_after_t0: float) -> None:
        self.now = T0 + seconds_after_t0


@functools.lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    text = shared_file("fixed-spotify-open-api.yml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


ERROR_BODY = {"type": "object", "required": ["error"],
              "properties": {"error": schema("ErrorObject")}}


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _nullable(node: dict[str, Any]) -> bool:
    description = str(node.get("description", "")).lower().replace("`", "")
    return bool(node.get("nullable")) or "can be null" in description


def validate(value: Any, node: dict[str, Any], allow_null: frozenset[str] = frozenset(),
             path: str = "$") -> list[str]:
    """Problems of `value` against an OpenAPI 3.0 schema: types, required, enum, $ref,
    allOf and oneOf. Null passes where the spec says nullable / "Can be null", or where
    the last path segment is in `allow_null` (the README's documented differences)."""
    if value is None:
        ok = _nullable(node) or _nullable(_deref(node)) or path.rsplit(".", 1)[-1] in allow_null
        return [] if ok else [f"{path}: null"]
    node = _deref(node)
    problems: list[str] = []
    for part in node.get("allOf", []):
        problems += validate(value, part, allow_null, path)
    if "oneOf" in node:
        results = [validate(value, option, allow_null, path) for option in node["oneOf"]]
        if all(results):
            problems += min(results, key=len)
    expected = node.get("type")
    if expected and (not isinstance(value, _TYPES[expected])
                     or (expected in ("integer", "number") and isinstance(value, bool))):
        return problems + [f"{path}: {type(value).__name__} is not {expected}"]
    if "enum" in node and value not in node["enum"]:
        problems.append(f"{path}: {value!r} not in {node['enum']}")
    if node.get("format") == "date-time" and not _DATE_TIME.match(value):
        problems.append(f"{path}: {value!r} is not a date-time")
    if isinstance(value, dict):
        problems += [f"{path}.{key}: missing" for key in node.get("required", [])
                     if key not in value]
        for key, sub in node.get("properties", {}).items():
            if key in value:
                problems += validate(value[key], sub, allow_null, f"{path}.{key}")
    if isinstance(value, list) and "items" in node:
        for index, element in enumerate(value):
            problems += validate(element, node["items"], allow_null, f"{path}[{index}]")
    return problems


def key_problems(real: Any, simulated: Any, path: str = "$") -> list[str]:
    """Keys of the recorded body missing from the simulated one, and type mismatches,
    at every object level (lists compared by their first element)."""
    if real is None or simulated is None:
        return []
    if isinstance(real, dict) and isinstance(simulated, dict):
        problems = []
        for key, value in real.items():
            if key not in simulated:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += key_problems(value, simulated[key], f"{path}.{key}")
        return problems
    if isinstance(real, list) and isinstance(simulated, list):
        return key_problems(real[0], simulated[0], path + "[0]") if real and simulated else []
    if type(real) is not type(simulated):
        return [f"{path}: {type(simulated).__name__} instead of {type(real).__name__}"]
    return []


def api_session(sim: SpotifySimulator) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + sim.issue_access_token()
    return session


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def parse_time(iso: str) -> int:
    # strptime, not fromisoformat: Python 3.9 reads neither "Z" nor every fraction length there.
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


def player(sim: SpotifySimulator, clock: FakeClock, at: float, path: str = "/me/player",
           **params: Any) -> Any:
    """The body at `at` seconds after T0, or the status code when there is no body."""
    clock.at(at)
    response = api_session(sim).get(sim.api_url + path, params=params, timeout=5)
    return response.json() if response.status_code == 200 else response.status_code


def feed(sim: SpotifySimulator, **params: Any) -> Any:
    response = api_session(sim).get(sim.api_url + "/me/player/recently-played", params=params)
    return response.json() if response.ok else response


def token(sim: SpotifySimulator, auth: tuple[str, str] | None = None,
          **form: str) -> requests.Response:
    return requests.post(sim.accounts_url + "/api/token", data=form, auth=auth, timeout=5)


def refresh(sim: SpotifySimulator, refresh_token: str | None = "sim-refresh-0",
            client_id: str = "sim-client") -> requests.Response:
    form = {"grant_type": "refresh_token", "client_id": client_id}
    return token(sim, **form, **({"refresh_token": refresh_token} if refresh_token else {}))


def authorize(sim: SpotifySimulator, **params: str) -> requests.Response:
    query = {"client_id": "sim-client", "response_type": "code", "redirect_uri": CB,
             "state": "xyz", "scope": "user-read-recently-played", **params}
    return requests.get(sim.accounts_url + "/authorize", params=query, allow_redirects=False)


def redirect_query(response: requests.Response) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def pkce_code(sim: SpotifySimulator, challenge: str) -> str:
    return redirect_query(authorize(sim, code_challenge_method="S256",
                                    code_challenge=challenge))["code"]


# Skip at 10 s, pause 15-18 s, seek, repeat from 15 s that clamps at the end, idle, ad.
TIMELINE = (Play(SONG, 10000), Play(OTHER, 5000), Pause(3000), Seek(20000), Resume(4000),
            Play(SONG, 20000, start_ms=15000), Idle(3000), Play(ad(2000), 2000))
# (seconds after T0, (name or type, progress_ms, is_playing, ms of last change) or 204)
TIMELINE_CASES = [
    (5, ("Song", 5000, True, 0)), (12, ("Other", 2000, True, 10000)),
    (16, ("Other", 5000, False, 15000)), (17.5, ("Other", 5000, False, 15000)),
    (19, ("Other", 21000, True, 18000)), (23, ("Song", 16000, True, 22000)),
    (30, ("Song", 20000, True, 22000)), (43, 204), (46, ("ad", 1000, True, 45000)),
    (48, 204), (-1, 204)]

FAULT_CASES = [
    (Fault("status", status=503), 503,
     lambda r: r.json() == {"error": {"status": 503, "message": "Service unavailable"}}),
    (Fault("status", status=500, body={"error": {"status": 500, "message": "x"}}), 500,
     lambda r: r.json()["error"]["message"] == "x"),
    (Fault.premium_required(), 403, lambda r: r.json()["error"]["reason"] == "PREMIUM_REQUIRED"),
    (Fault.user_not_registered(), 403, lambda r: "may not be registered" in r.text),
    (Fault("status", status=404), 404, lambda r: r.json()["error"]["status"] == 404),
    (Fault("rate_limit", retry_after=7), 429,
     lambda r: r.headers["Retry-After"] == "7" and r.json() == recorded("rate_limit.json")),
    (Fault("rate_limit", retry_after=60, retry_after_http_date=True), 429,
     lambda r: parsedate_to_datetime(r.headers["Retry-After"]).timestamp() == T0 + 60),
    (Fault("not_json"), 200, lambda r: "text/html" in r.headers["Content-Type"]
     and r.text.startswith("<!DOCTYPE html>")),
]
