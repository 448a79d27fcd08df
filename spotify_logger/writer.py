"""The write path with no lost plays: Redis when it is up, the spool when it is not.

Order is kept: while anything is spooled, a new batch goes to Redis only after the spool was
replayed, so a stale spooled write can never land after a newer live one.

A Redis that restarted empty no longer has the plays that later writes update. The store refuses
such an update (it would leave a play with no uri) and says which; the writer restates each of
those plays whole, from what it sent lately (History) on top of the open-play mirror, or drops the
write with a warning when it knows too little. A setting or a foreign key (exit 78) spools the
batch in hand before it stops the poller, so a restart after the fix loses nothing.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Callable

from .batch import Batch, PlayWrite, merge_write
from .errors import ConfigError, StoreFull, StoreUnavailable
from .logs import get_logger
from .spool import Spool
from .store import Store, StoreError

log = get_logger(__name__)

# (started_at, hash) of the open play's full state, from the state dir (openplay.py), or None.
Base = Callable[[], "tuple[int, dict[str, str]] | None"]


class History:
    """The plays this writer sent lately (live, spooled or replayed), folded as the store folds
    them: a handful of dict updates a poll, and a play restated from it is the play as Redis had it."""

    KEEP = 8  # plays: the open one, the ones a spool or a replay holds

    def __init__(self, base: Base) -> None:
        self.base = base
        self.plays: dict[int, dict[str, str]] = {}

    def fold(self, batch: Batch) -> None:
        for w in batch.writes:
            if w.create_only:  # whole plays already; the store never refuses them
                continue
            h = self.plays.get(w.started_at)
            if h is None:
                h = self.plays[w.started_at] = {}
                if len(self.plays) > self.KEEP:
                    del self.plays[min(self.plays)]
            merge_write(h, w)

    def restate(self, write: PlayWrite) -> PlayWrite | None:
        """The whole play the refused `write` updates, or None when what is known has no uri."""
        whole: dict[str, str] = {}
        base = self.base()
        if base is not None and base[0] == write.started_at:
            whole.update(base[1])
        folded = self.plays.get(write.started_at, {})
        merge_write(whole, PlayWrite(write.started_at, folded, write.uri, counted=folded.get("counted") == "1"))
        merge_write(whole, write)
        if not whole.get("uri"):
            return None
        whole.setdefault("started_at", str(write.started_at))
        return PlayWrite(started_at=write.started_at, fields=whole, uri=whole["uri"],
                         artists=write.artists or _artists(whole),
                         counted=write.counted or whole.get("counted") == "1")


class Writer:
    def __init__(self, store: Store, spool: Spool, *, base: Base = lambda: None) -> None:
        self.store = store
        self.spool = spool
        self.history = History(base)
        # Set by the Poller that owns this writer. Fed during a long replay, which is progress
        # (the watchdog's), and called before the first line goes into an empty spool: the spool
        # holds only what changed, and the poller saves the full state it applies to (openplay.py).
        self.on_progress: Callable[[], None] = lambda: None
        self.on_spool_start: Callable[[], None] = lambda: None
        self.redis_up = True
        self._outage: str | None = None  # the outage last logged, until a write lands again
        self._whole_in_spool: set[int] = set()  # plays the spool holds a whole write of

    def write(self, batch: Batch) -> bool:
        """Store the batch or spool it. True when it reached Redis. Never raises on an outage;
        a setting or a foreign key (ConfigError) raises, after the batch went to the spool."""
        self.history.fold(batch)
        try:
            if self.spool.pending() and not self.flush():
                self._spool(batch)
                return False
            self._apply(batch)
        except StoreUnavailable as exc:
            self._went_down(exc)
            self._spool(batch)
            return False
        except ConfigError:
            self._spool(batch)
            raise
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
        self.history.fold(batch)  # after a restart, the spool is all this process knows of its plays
        try:
            self._apply(batch)
        except StoreError as exc:
            # Redis is up but rejects this batch for good (a bug's bad value, say). Keeping it
            # would block every later batch and crash-loop the poller; say loudly what is lost.
            log.error("spool_batch_rejected", error=str(exc), polled_at=batch.polled_at,
                      plays=[w.started_at for w in batch.writes])

    def _apply(self, batch: Batch) -> None:
        refused = self.store.apply_batch(batch).refused
        if not refused:
            return
        restated = []
        for write in batch.writes:
            if write.started_at not in refused:
                continue
            whole = self.history.restate(write)
            if whole is None:
                log.warning("play_write_dropped", started_at=write.started_at, polled_at=batch.polled_at,
                            reason="the play is gone from Redis and this process knows too little of it to restate it")
            else:
                restated.append(whole)
        if restated:
            # If this fails the caller spools or replays the batch again: restating is idempotent.
            self.store.apply_batch(Batch(polled_at=batch.polled_at, writes=tuple(restated), keep_current=True))
            log.warning("play_restated", plays=[w.started_at for w in restated], polled_at=batch.polled_at)

    def _spool(self, batch: Batch) -> None:
        if batch.writes:  # a poll that changed nothing has nothing to lose
            if not self.spool.pending():
                self.on_spool_start()
                self._whole_in_spool = set()
            self.spool.append(self._self_contained(batch))

    def _self_contained(self, batch: Batch) -> Batch:
        """The batch with the first spooled write of each play restated whole: a Redis that comes
        back empty then gets every play whole from the spool alone, even when this process is gone
        by then and the mirror has moved on to a later play."""
        writes = []
        for w in batch.writes:
            if not (w.create_only or "uri" in w.fields or w.started_at in self._whole_in_spool):
                w = self.history.restate(w) or w
            if "uri" in w.fields:
                self._whole_in_spool.add(w.started_at)
            writes.append(w)
        return replace(batch, writes=tuple(writes))

    def _went_down(self, exc: StoreUnavailable) -> None:
        # Said once per kind of outage until a write lands again, not once a poll.
        kind = "store_full" if isinstance(exc, StoreFull) else "store_unavailable"
        if kind != self._outage:
            extra = self._memory() if kind == "store_full" else {}
            log.warning(kind, error=str(exc), spool=str(self.spool.path), **extra)
            self._outage = kind
        self.redis_up = False

    def _came_back(self) -> None:
        if not self.redis_up:
            log.info("store_available")
        self.redis_up = True
        self._outage = None

    def _memory(self) -> dict[str, int | None]:
        try:
            memory = self.store.memory()
        except (StoreUnavailable, StoreError, ConfigError):
            return {"used_memory": None, "maxmemory": None}
        return {"used_memory": memory.used_memory, "maxmemory": memory.maxmemory}


def _artists(fields: dict[str, str]) -> tuple[str, ...]:
    """The artists JSON list of a play hash (the counters a restated play bumps); () when damaged."""
    try:
        value = json.loads(fields.get("artists") or "[]")
    except ValueError:
        return ()
    return tuple(a for a in value if isinstance(a, str)) if isinstance(value, list) else ()
