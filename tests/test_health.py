"""`status` health: one verdict on Redis, whatever step of the reading fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
