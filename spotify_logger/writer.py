"""The write path with no lost plays: Redis when it is up, the spool when it is not.

Order is kept: while anything is spooled, a new batch goes to Redis only after the spool was
replayed, so a stale spooled write can never land after a newer live one.
"""

from __future__ import annotations

from typing import Callable

from .batch import Batch
from .errors import StoreUnavailable
from .logs import get_logger
from .spool import Spool
from .store import Store, StoreError

log = get_logger(__name__)


class Writer:
    def __init__(self, store: Store, spool: Spool) -> None:
        self.store = store
        self.spool = spool
        # Set by the Poller that owns this writer. Fed during a long replay, which is progress
        # (the watchdog's), and called before the first line goes into an empty spool: the spool
        # holds only what changed, and the poller saves the full state it applies to (openplay.py).
        self.on_progress: Callable[[], None] = lambda: None
        self.on_spool_start: Callable[[], None] = lambda: None
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
            replayed = self.spool.replay(self._replay_one, progress=self.on_progress)
        except StoreUnavailable as exc:
            self._went_down(exc)
            return False
        log.info("spool_replayed", batches=replayed)
        self._came_back()
        return True

    def _replay_one(self, batch: Batch) -> None:
        try:
            self.store.apply(batch)
        except StoreError as exc:
            # Redis is up but rejects this batch for good (a key of the wrong type, say). Keeping
            # it would block every later batch and crash-loop the poller; say loudly what is lost.
            log.error("spool_batch_rejected", error=str(exc), polled_at=batch.polled_at,
                      plays=[w.started_at for w in batch.writes])

    def _spool(self, batch: Batch) -> None:
        if batch.writes:  # a poll that changed nothing has nothing to lose
            if not self.spool.pending():
                self.on_spool_start()
            self.spool.append(batch)

    def _went_down(self, exc: StoreUnavailable) -> None:
        if self.redis_up:
            log.warning("store_unavailable", error=str(exc), spool=str(self.spool.path))
        self.redis_up = False

    def _came_back(self) -> None:
        if not self.redis_up:
            log.info("store_available")
        self.redis_up = True
