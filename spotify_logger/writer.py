"""The write path with no lost plays: Redis when it is up, the spool when it is not."""

from __future__ import annotations

from .batch import Batch
from .errors import StoreUnavailable
from .logs import get_logger
from .spool import Spool
from .store import Store

log = get_logger(__name__)


class Writer:
    def __init__(self, store: Store, spool: Spool) -> None:
        self.store = store
        self.spool = spool
        self.redis_up = True

    def write(self, batch: Batch) -> bool:
        """Store the batch or spool it. True when it reached Redis. Never raises on an outage."""
        if self.spool.pending() and not self.flush():
            self._spool(batch)
            return False
        try:
            self.store.apply(batch)
        except StoreUnavailable as exc:
            self._went_down(exc)
            self._spool(batch)
            return False
        self._came_back()
        return True

    def flush(self) -> bool:
        """Replay the spool into Redis. True when nothing is left in it."""
        if not self.spool.pending():
            return True
        try:
            replayed = self.spool.replay(self.store.apply)
        except StoreUnavailable as exc:
            self._went_down(exc)
            return False
        log.info("spool_replayed", batches=replayed)
        self._came_back()
        return True

    def _spool(self, batch: Batch) -> None:
        if batch.writes:  # a poll that changed nothing has nothing to lose
            self.spool.append(batch)

    def _went_down(self, exc: StoreUnavailable) -> None:
        if self.redis_up:
            log.warning("store_unavailable", error=str(exc), spool=str(self.spool.path))
        self.redis_up = False

    def _came_back(self) -> None:
        if not self.redis_up:
            log.info("store_available")
        self.redis_up = True
