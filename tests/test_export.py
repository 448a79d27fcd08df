"""`spotify-logger export`: every play, every field, CSV or JSON Lines, on a real redis-server."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from spotify_logger import keys
from spotify_logger.export import COLUMNS, export

from conftest import play_hashes
from helpers import DAY, MON, A, B, EP, add_play, run_cli


@pytest.fixture
def store(real_redis: Any) -> Any:
    add_play(real_redis, MON, 200_000, A, artists=("Björk", "Guest, Jr."), name='Jóga, "live"')
    add_play(real_redis, MON + DAY, 10_000, B)
    add_play(real_redis, MON + 2 * DAY, 600_000, EP, name="Episode", artists=(), album=None, kind="episode",
             show="The Show")
    real_redis.hset(keys.play_key(MON + 2 * DAY), "future_field", "kept")
    return real_redis


def test_csv_has_every_field_in_schema_order(store: Any, redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, redis_server.url, "export", "--format", "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert tuple(rows[0]) == COLUMNS == keys.PLAY_FIELDS and COLUMNS[0] == "started_at"
    stored = play_hashes(store)
    assert [int(r[0]) for r in rows[1:]] == sorted(stored)
    for row in rows[1:]:
        expected = stored[int(row[0])]
        assert {c: v for c, v in zip(COLUMNS, row) if v} == {k: v for k, v in expected.items() if k in COLUMNS}
    assert json.loads(rows[1][COLUMNS.index("artists")]) == ["Björk", "Guest, Jr."]


def test_jsonl_is_typed_and_keeps_unknown_fields(store: Any, redis_server: Any,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, redis_server.url, "export", "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3 and list(rows[0]) == list(COLUMNS)
    first = rows[0]
    assert (first["started_at"], first["ms_played"], first["counted"], first["playing"]) == (MON, 200_000, True, False)
    assert first["artists"] == ["Björk", "Guest, Jr."] and first["name"] == 'Jóga, "live"' and first["show"] is None
    assert rows[1]["counted"] is False
    assert rows[2]["type"] == "episode" and rows[2]["future_field"] == "kept"


def test_since_and_until_select_plays(store: Any, redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, redis_server.url, "export", "--format", "jsonl", "--since", "2024-06-04",
                           "--until", "2024-06-04", "--tz", "UTC")
    assert code == 0 and [json.loads(x)["uri"] for x in out.splitlines()] == [B]


def test_output_file_appears_complete(store: Any, redis_server: Any, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "plays.csv"
    code, out, err = run_cli(capsys, redis_server.url, "export", "-o", str(target))
    assert code == 0 and out == "" and "exported 3 plays" in err
    assert len(target.read_text().splitlines()) == 4 and [p.name for p in target.parent.iterdir()] == ["plays.csv"]
    code, _, err = run_cli(capsys, redis_server.url, "export", "-o", str(tmp_path / "no" / "such" / "dir.csv"))
    assert code == 65 and "cannot write" in err


def test_a_failed_export_leaves_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "plays.csv"
    code, _, err = run_cli(capsys, "redis://127.0.0.1:1/0", "export", "-o", str(target))
    assert code == 75 and not list(tmp_path.iterdir())


def test_export_streams_plays_as_it_reads_them(real_redis: Any) -> None:
    """Rows reach the output page by page, not after reading everything."""
    pipe = real_redis.pipeline(transaction=False)
    for i in range(3_000):
        start = MON + i * 300_000
        pipe.hset(keys.play_key(start), mapping={"started_at": start, "uri": A, "ms_played": 200_000})
        pipe.zadd(keys.INDEX, {str(start): start})
    pipe.execute()

    class Watching(io.StringIO):
        first_write_seen: int | None = None

        def write(self, text: str) -> int:
            if self.first_write_seen is None and text.startswith("{"):
                self.first_write_seen = int(real_redis.info("stats")["total_commands_processed"])
            return super().write(text)

    before = int(real_redis.info("stats")["total_commands_processed"])
    out = Watching()
    assert export(real_redis, out, "jsonl") == 3_000
    after = int(real_redis.info("stats")["total_commands_processed"])
    assert out.first_write_seen is not None and out.first_write_seen - before < (after - before) / 2
