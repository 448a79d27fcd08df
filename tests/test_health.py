"""`status` health: one verdict on Redis, whatever step of the reading fails."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from conftest import env_for, wait_until
from spotify_logger.batch import Batch
from spotify_logger.cli import main
from spotify_logger.config import Settings
from spotify_logger.errors import StoreUnavailable
from spotify_logger.health import gather
from spotify_logger.store import Store


class AnswersPingOnly(Store):
    """Redis that answers PING, then drops the connection (a restart under way, say)."""

    def status(self) -> dict[str, str]:
        raise StoreUnavailable("Redis is unreachable: ConnectionError")


def test_redis_failing_after_ping_is_unhealthy(tmp_path: Path, fake_redis: Any) -> None:
    health = gather(Settings(state_dir=tmp_path), store=AnswersPingOnly(fake_redis))
    assert not health.redis_reachable
    assert "Redis is unreachable" in health.problems and not health.healthy


def test_reachable_redis_with_no_poll_yet(tmp_path: Path, fake_redis: Any) -> None:
    health = gather(Settings(state_dir=tmp_path), store=Store(fake_redis))
    assert health.redis_reachable and "no poll recorded yet" in health.problems


# --- Redis that answers but refuses writes: a real redis-server -----------------------------------

def healthy_then(redis_server: Any, sim_factory: Any, settings_for: Any) -> Any:
    settings = settings_for(sim_factory(), redis_server.url)
    Store(redis_server.client()).apply(Batch(polled_at=int(time.time() * 1000)))
    assert gather(settings).healthy, gather(settings).problems
    return settings


def test_a_read_only_replica_is_unhealthy(redis_server: Any, sim_factory: Any, settings_for: Any,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Under a running poller `replicaof` was "healthy", exit 0, while the spool grew."""
    settings = healthy_then(redis_server, sim_factory, settings_for)
    client = redis_server.client()
    client.replicaof("127.0.0.1", 1)   # a master that is not there: a read-only replica for good
    try:
        with pytest.raises(redis.exceptions.ReadOnlyError):
            client.set("probe", "1")
        health = gather(settings)
        assert health.redis_reachable and health.redis_refusing == "READONLY" and not health.healthy
        assert any("refuses writes (READONLY)" in p for p in health.problems), health.problems
        assert main(["status"], env=env_for(settings)) == 69
        assert "reachable, REFUSES WRITES (READONLY" in capsys.readouterr().out
        client.config_set("replica-read-only", "no")   # a writable replica takes the writes
        assert gather(settings).healthy
    finally:
        client.replicaof("NO", "ONE")


def test_a_failed_save_with_stop_writes_is_unhealthy(tmp_path: Path, redis_server: Any, sim_factory: Any,
                                                     settings_for: Any) -> None:
    settings = healthy_then(redis_server, sim_factory, settings_for)
    client = redis_server.client()
    client.config_set("save", "3600 1")
    shutil.rmtree(redis_server.directory)   # its working dir: the background save cannot create its file
    client.bgsave()
    wait_until(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err", "a failed BGSAVE")
    with pytest.raises(redis.ResponseError, match="MISCONF"):
        client.set("probe", "1")
    health = gather(settings)
    assert health.redis_refusing == "MISCONF" and not health.healthy
    assert any("refuses writes (MISCONF)" in p for p in health.problems), health.problems
    client.config_set("stop-writes-on-bgsave-error", "no")
    assert gather(settings).healthy
