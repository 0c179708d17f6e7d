"""A durable local spool for records the database has not taken yet.

The retrying sinks keep pending records in memory; if the process dies while
the database is down they would be gone. The spool writes each one to local
disk first, so a restart (even after ``kill -9``) replays what was pending:

* append-only segment files ``<seq>.spool`` in one directory (0700, files
  0600), one line per entry: ``<crc32 hex> <seq> <payload>\\n``; a torn last
  line (the process died mid-write) fails its checksum and is skipped;
* written and ``fsync``-ed by one background thread, in batches, so the event
  loop never waits for the disk;
* sequence numbers keep growing across restarts; ``release(upto)`` deletes the
  segments whose entries are all ``<= upto`` (they are in the database), and
  truncates the open one when everything in it is;
* bounded: past ``max_bytes`` new entries are NOT spooled (the records still
  go to the database from memory, but would not survive a crash); this is
  logged once (``<name>_spool_full``, error) with the policy, counted in
  ``skipped``, and logged again when there is room (``<name>_spool_resumed``);
* one process per directory (an ``flock`` on ``lock``), so two services never
  replay each other's records.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from hotline.core.errors import HotlineError
from hotline.core.logs import get_logger

SUFFIX = ".spool"
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
_STOP = object()


class SpoolBusy(HotlineError):
    """Another process holds the spool directory."""

    error_id = "spool_busy"


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    seq: int
    payload: bytes


def encode_entry(seq: int, payload: bytes) -> bytes:
    if b"\n" in payload:
        raise ValueError("a spool payload is one line")
    body = b"%d %s" % (seq, payload)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_entries(data: bytes) -> tuple[list[SpoolEntry], int]:
    """The entries of one segment's bytes, and how many lines were damaged."""
    entries: list[SpoolEntry] = []
    damaged = 0
    for line in data.split(b"\n"):
        if not line:
            continue
        crc, _, body = line.partition(b" ")
        seq, _, payload = body.partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                raise ValueError("checksum")
            entries.append(SpoolEntry(int(seq), payload))
        except ValueError:
            damaged += 1
    return entries, damaged


def read_spool(directory: Path) -> list[SpoolEntry]:
    """Every intact entry in ``directory``, in sequence order (no lock: for tests and tools)."""
    entries: list[SpoolEntry] = []
    for path in sorted(directory.glob(f"*{SUFFIX}"), key=_segment_number):
        entries += decode_entries(path.read_bytes())[0]
    return sorted(entries, key=lambda e: e.seq)


def _segment_number(path: Path) -> int:
    try:
        return int(path.name.removesuffix(SUFFIX))
    except ValueError:
        return -1


@dataclass
class _Segment:
    path: Path
    max_seq: int = -1
    size: int = 0


class Spool:
    """See the module docstring. ``open()`` first (blocking: call it from a thread
    at start-up), then ``append``/``release`` from the event loop, ``close()`` at the end."""

    def __init__(self, directory: Path, *, name: str = "call_store",
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = directory
        self._name = name
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._log = get_logger(f"crm_sync.{name}")
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._segments: list[_Segment] = []  # closed ones, oldest first
        self._current: _Segment | None = None
        self._fd: int | None = None
        self._full = False
        self.skipped = 0  # entries not spooled because the spool was full
        self.last_seq = -1

    # -- start and stop ------------------------------------------------------------

    def open(self) -> list[SpoolEntry]:
        """Lock the directory and return what a previous process left, in order. Blocking."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolBusy(f"{self.directory}: another process is using this spool "
                            "(one service per server id and state directory)") from None
        self._lock_fd = fd
        entries: list[SpoolEntry] = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}"), key=_segment_number):
            found, damaged = decode_entries(path.read_bytes())
            if damaged:
                self._log.warning(f"{self._name}_spool_damaged_lines", segment=path.name,
                                  damaged=damaged)
            if not found:
                path.unlink()
                continue
            entries += found
            self._segments.append(_Segment(path, max(e.seq for e in found),
                                           path.stat().st_size))
        entries.sort(key=lambda e: e.seq)
        self.last_seq = entries[-1].seq if entries else -1
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-spool",
                                        daemon=True)
        self._thread.start()
        if entries:
            self._log.info(f"{self._name}_spool_replayed", entries=len(entries),
                           segments=len(self._segments))
        return entries

    def close(self) -> None:
        """Write what is queued, stop the thread, release the lock. Blocking."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._lock_fd is not None:
            if not self._segments and self._current is None:
                # Nothing pending: leave no trace (every database a test run uses
                # would otherwise leave an empty directory in the state dir).
                with contextlib.suppress(OSError):
                    (self.directory / "lock").unlink()
                    self.directory.rmdir()
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- from the event loop (never blocks) -------------------------------------

    def next_seq(self) -> int:
        self.last_seq += 1
        return self.last_seq

    def append(self, seq: int, payload: bytes) -> None:
        self._queue.put(SpoolEntry(seq, payload))

    def release(self, upto: int) -> None:
        """Everything with ``seq <= upto`` is in the database: drop it from disk."""
        self._queue.put(upto)

    def flushed(self) -> threading.Event:
        """Set once everything queued before this call is on disk (for tests and stop)."""
        done = threading.Event()
        self._queue.put(done)
        return done

    # -- the writer thread -----------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 1000:
                    batch.append(self._queue.get_nowait())
            stop = False
            entries: list[SpoolEntry] = []
            for item in batch:
                if isinstance(item, SpoolEntry):
                    entries.append(item)
                    continue
                self._write(entries)  # keep the order of appends and releases
                entries = []
                if item is _STOP:
                    stop = True
                elif isinstance(item, int):
                    self._release(item)
                elif isinstance(item, threading.Event):
                    item.set()
            self._write(entries)
            if stop:
                self._close_current()
                return

    def _write(self, entries: list[SpoolEntry]) -> None:
        if not entries:
            return
        try:
            data = bytearray()
            top = -1
            for entry in entries:
                if self._total_bytes() + len(data) >= self._max_bytes:
                    self._overflow()
                    continue
                data += encode_entry(entry.seq, entry.payload)
                top = max(top, entry.seq)
            if not data:
                return
            current = self._segment()
            assert self._fd is not None
            os.write(self._fd, data)
            os.fsync(self._fd)
            current.size += len(data)
            current.max_seq = max(current.max_seq, top)
            if current.size >= self._segment_bytes:
                self._close_current()
        except OSError as exc:  # disk full, read-only: the records still go to the database
            self.skipped += len(entries)
            self._log.error(f"{self._name}_spool_write_failed", error=str(exc),
                            entries=len(entries))

    def _overflow(self) -> None:
        self.skipped += 1
        if not self._full:
            self._full = True
            self._log.error(
                f"{self._name}_spool_full", max_bytes=self._max_bytes,
                policy="new records are kept in memory only (written to the database when it "
                       "is back, lost if the process dies first) until the spool has room",
            )

    def _total_bytes(self) -> int:
        current = self._current.size if self._current is not None else 0
        return current + sum(s.size for s in self._segments)

    def _segment(self) -> _Segment:
        if self._current is None:
            top = max([s.max_seq for s in self._segments] + [-1])
            number = max(top + 1, 0)
            path = self.directory / f"{number:020d}{SUFFIX}"
            while path.exists():  # a truncated current segment left behind
                number += 1
                path = self.directory / f"{number:020d}{SUFFIX}"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._fsync_directory()
            self._current = _Segment(path)
        return self._current

    def _close_current(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._current is not None:
            if self._current.size:
                self._segments.append(self._current)
            else:
                self._current.path.unlink(missing_ok=True)
            self._current = None

    def _release(self, upto: int) -> None:
        try:
            kept = []
            for segment in self._segments:
                if segment.max_seq <= upto:
                    segment.path.unlink(missing_ok=True)
                else:
                    kept.append(segment)
            removed = len(kept) != len(self._segments)
            self._segments = kept
            current = self._current
            if current is not None and current.size and current.max_seq <= upto:
                assert self._fd is not None
                os.ftruncate(self._fd, 0)
                os.fsync(self._fd)
                current.size, current.max_seq = 0, -1
            if removed:
                self._fsync_directory()
        except OSError as exc:
            self._log.error(f"{self._name}_spool_release_failed", error=str(exc))
        if self._full and self._total_bytes() < self._max_bytes:
            self._full = False
            self._log.info(f"{self._name}_spool_resumed", skipped=self.skipped)

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
