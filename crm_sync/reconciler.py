"""Follows Asterisk's queue_log file and reconciles the case store with it.

Chosen over realtime queue_log (``res_config_pgsql``): the file is there on
every Asterisk whatever its modules, a database outage cannot make Asterisk
lose queue_log lines, and nothing in Asterisk's configuration has to know the
case store's credentials. The reconciler stores every line in
``queue_log_events`` (the same data realtime queue_log would give) and
corrects the calls they concern (:meth:`PostgresCallStore.record_queue_log`).

Reading. ``QueueLogTail`` reads from a remembered ``(inode, byte offset)``:
a file replaced under the same name (logrotate's rename, Asterisk's
``logger rotate``) is read to its end first, then the new one from its start;
a file that shrank (``copytruncate``, ``> queue_log``) is read again from 0; a
file renamed while we were stopped is found by its inode among its rotated
siblings (``queue_log.1``, ``queue_log-20261130``…). Only complete lines are
taken. The position is committed in the same transaction as the lines it
covers, so a restart neither skips nor repeats a line; while the database is
down nothing is lost: the lines wait in the file.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from crm_sync.call_store import TRANSIENT_ERRORS, PostgresCallStore
from crm_sync.queue_log import QueueLogEntry, parse_line, split_lines
from hotline.core.aio import cancel_and_wait
from hotline.core.logs import get_logger

log = get_logger("crm_sync.reconciler")
READ_BYTES = 256 * 1024


@dataclass
class TailChunk:
    lines: list[str]
    inode: int  # the file the position is in (a rotated file keeps its inode)
    offset: int  # just after the last complete line returned


class QueueLogTail:
    """Blocking file reads (run them in a thread); see the module docstring."""

    def __init__(self, path: Path, inode: int | None = None, offset: int = 0) -> None:
        self.path = path
        self.inode = inode
        self.offset = offset
        self.rotations = 0
        self.truncations = 0

    def read(self, limit: int = READ_BYTES) -> TailChunk | None:
        """The next complete lines (at most about ``limit`` bytes); None if the file
        is not there."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return None
        if self.inode is not None and current.st_ino != self.inode:
            old = self._rotated_sibling(self.inode)
            if old is not None:
                chunk = self._read_from(old, self.inode, limit)
                if chunk.lines or chunk.offset != self.offset:
                    self.offset = chunk.offset
                    return chunk
            self.rotations += 1
            log.info("queue_log_rotated", path=str(self.path), read_old_to=self.offset)
            self.inode, self.offset = current.st_ino, 0
        elif self.inode is None:
            self.inode = current.st_ino
        if current.st_size < self.offset:
            self.truncations += 1
            log.warning("queue_log_truncated", path=str(self.path), size=current.st_size,
                        was_at=self.offset)
            self.offset = 0
        chunk = self._read_from(self.path, current.st_ino, limit)
        self.offset = chunk.offset
        return chunk

    def _read_from(self, path: Path, inode: int, limit: int) -> TailChunk:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_ino != inode:  # replaced between stat and open
                return TailChunk([], inode, self.offset)
            handle.seek(self.offset)
            data = handle.read(limit)
        lines, rest = split_lines(data)
        return TailChunk(lines, inode, self.offset + len(data) - len(rest))

    def _rotated_sibling(self, inode: int) -> Path | None:
        """The file with ``inode`` beside ours (our file, renamed by a rotation)."""
        try:
            siblings = list(self.path.parent.iterdir())
        except OSError:
            return None
        for sibling in siblings:
            if sibling.name.startswith(self.path.name) and sibling != self.path:
                try:
                    if sibling.stat().st_ino == inode:
                        return sibling
                except OSError:
                    continue
        return None


class QueueLogReconciler:
    """The background task: read, store and reconcile, remember the position."""

    def __init__(
        self,
        store: PostgresCallStore,
        asterisk_server: str,
        path: Path,
        *,
        poll_seconds: float = 0.5,
        retry_seconds: float = 2.0,
        orphan_sweep_seconds: float = 60.0,
    ) -> None:
        self._store = store
        self._server = asterisk_server
        self._path = path
        self._poll = poll_seconds
        self._retry = retry_seconds
        self._orphan_sweep = orphan_sweep_seconds
        self._task: asyncio.Task[None] | None = None
        self._tail: QueueLogTail | None = None
        self.lines = 0  # stored so far by this process
        self.corrected = 0
        self.caught_up = asyncio.Event()  # set whenever a read found nothing new

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="queue-log-reconciler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        tail = await self._open_tail()
        committed = (tail.inode, tail.offset)
        missing_logged = False
        last_sweep = asyncio.get_running_loop().time()
        while True:
            try:
                chunk = await asyncio.to_thread(tail.read)
            except OSError as exc:
                log.warning("queue_log_unreadable", path=str(self._path), error=str(exc))
                await asyncio.sleep(self._retry)
                continue
            if chunk is None:
                if not missing_logged:
                    log.warning("queue_log_missing", path=str(self._path))
                    missing_logged = True
                await asyncio.sleep(self._retry)
                continue
            missing_logged = False
            if chunk.lines or (chunk.inode, chunk.offset) != committed:
                entries = self._parse(chunk.lines)
                await self._store_chunk(entries, chunk)
                committed = (chunk.inode, chunk.offset)
                self.lines += len(entries)
            now = asyncio.get_running_loop().time()
            if now - last_sweep >= self._orphan_sweep:
                last_sweep = now
                try:
                    await self._store.finish_orphans(self._server)
                except TRANSIENT_ERRORS as exc:
                    log.warning("queue_log_orphan_sweep_failed", error=str(exc)[:300])
            if chunk.lines:
                self.caught_up.clear()
            else:
                self.caught_up.set()
                await asyncio.sleep(self._poll)

    async def _store_chunk(self, entries: list[QueueLogEntry], chunk: TailChunk) -> None:
        """Until it is stored: the lines stay in the file meanwhile, so waiting loses nothing."""
        outage = False
        while True:
            try:
                self.corrected += await self._store.record_queue_log(
                    self._server, entries, (str(self._path), chunk.inode, chunk.offset))
            except TRANSIENT_ERRORS as exc:
                if not outage:
                    outage = True
                    log.warning("queue_log_store_unavailable", error=str(exc)[:300])
                await asyncio.sleep(self._retry)
                continue
            if outage:
                log.info("queue_log_store_recovered")
            return

    async def _open_tail(self) -> QueueLogTail:
        while True:
            try:
                position = await self._store.queue_log_position(self._server, str(self._path))
                break
            except TRANSIENT_ERRORS as exc:
                log.warning("queue_log_store_unavailable", error=str(exc)[:300])
                await asyncio.sleep(self._retry)
        inode, offset = position if position is not None else (None, 0)
        log.info("queue_log_following", path=str(self._path), inode=inode, offset=offset)
        self._tail = QueueLogTail(self._path, inode, offset)
        return self._tail

    def _parse(self, lines: list[str]) -> list[QueueLogEntry]:
        entries = []
        for line in lines:
            entry = parse_line(line)
            if entry is None:
                log.warning("queue_log_line_unparsed", line=line[:200])
                continue
            entries.append(entry)
        return entries
