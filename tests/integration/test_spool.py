"""The local spool of pending call records: real files, real fsync, real flock."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from crm_sync.call_store import RetryingCallSink, record_from_json, record_to_json
from crm_sync.spool import Spool, SpoolBusy, decode_entries, encode_entry, read_spool
from hotline.core.records import CallOutcome, CallRecord, QueueAttempt

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def call(uid: str, **changes: object) -> CallRecord:
    record = CallRecord(call_key=f"pbx1:1796000000:{uid}", asterisk_server="pbx1", uniqueid=uid,
                        linkedid=uid, channel="PJSIP/trunk-1", started_at=T0,
                        caller_number="380501234567", caller_name="Тарас Шевченко")
    for name, value in changes.items():
        setattr(record, name, value)
    return record


async def flushed(spool: Spool) -> None:
    await asyncio.to_thread(spool.flushed().wait, 10)


def test_codec_round_trip_keeps_every_field() -> None:
    record = call("1.1", outcome=CallOutcome.ANSWERED, talk_seconds=3, talk_source="derived",
                  ended_at=T0, linkedids=["1.0", "1.1"],
                  attempts=[QueueAttempt("housing", T0, position=2, answered_at=T0,
                                         wait_seconds=4, talk_seconds=3, talk_source="derived",
                                         operator_name="Оператор 7")])
    assert record_from_json(record_to_json(record)) == record
    assert b"\n" not in record_to_json(record)


def test_a_torn_or_damaged_line_is_skipped() -> None:
    data = encode_entry(1, b'{"a":1}') + encode_entry(2, b'{"b":2}')
    entries, damaged = decode_entries(data[:-5])  # the process died mid-write
    assert [e.seq for e in entries] == [1] and damaged == 1
    flipped = data.replace(b'{"a":1}', b'{"a":7}')
    entries, damaged = decode_entries(flipped)
    assert [e.seq for e in entries] == [2] and damaged == 1


async def test_entries_survive_a_restart_and_release_truncates(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, segment_bytes=50)
    assert await asyncio.to_thread(spool.open) == []
    for n in range(6):
        spool.append(spool.next_seq(), b"record %d" % n)
        await flushed(spool)  # one batch each (a batch never straddles two segments)
    files = sorted(directory.glob("*.spool"))
    assert len(files) > 1  # rolled over at segment_bytes
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    await asyncio.to_thread(spool.close)  # (a crash leaves the same files: they are fsync-ed)

    again = Spool(directory, segment_bytes=50)
    entries = await asyncio.to_thread(again.open)
    assert [(e.seq, e.payload) for e in entries] == [(n, b"record %d" % n) for n in range(6)]
    assert again.next_seq() == 6  # sequence numbers keep growing
    again.release(3)
    await flushed(again)
    # whole segments go (3 entries of 20 bytes each here): 3 stays with 4 and 5
    assert [e.seq for e in read_spool(directory)] == [3, 4, 5]
    again.release(4)
    await flushed(again)
    assert [e.seq for e in read_spool(directory)] == [3, 4, 5]
    again.release(5)
    await flushed(again)
    assert read_spool(directory) == []
    assert sum(f.stat().st_size for f in directory.glob("*.spool")) == 0
    await asyncio.to_thread(again.close)


async def test_one_process_per_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool")
    await asyncio.to_thread(first.open)
    with pytest.raises(SpoolBusy, match="another process"):
        Spool(tmp_path / "spool").open()
    await asyncio.to_thread(first.close)


async def test_a_full_spool_says_so_once_and_resumes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=300, segment_bytes=100)
    await asyncio.to_thread(spool.open)
    with capture_logs() as logs:
        for n in range(20):
            spool.append(spool.next_seq(), b"x" * 40 + b"%d" % n)
        await flushed(spool)
        kept = [e.seq for e in read_spool(tmp_path / "spool")]
        assert 0 < len(kept) < 20 and spool.skipped == 20 - len(kept)
        spool.release(19)
        spool.append(spool.next_seq(), b"after")
        await flushed(spool)
    events = [e["event"] for e in logs]
    assert events.count("call_store_spool_full") == 1
    full = next(e for e in logs if e["event"] == "call_store_spool_full")
    assert "memory only" in full["policy"] and full["log_level"] == "error"
    assert "call_store_spool_resumed" in events
    assert [e.payload for e in read_spool(tmp_path / "spool")] == [b"after"]
    await asyncio.to_thread(spool.close)


class DownSink:
    """A database that is down until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.saved: dict[str, CallRecord] = {}

    async def save_call(self, record: CallRecord) -> None:
        if not self.up:
            raise ConnectionRefusedError("down")
        self.saved[record.call_key] = record


async def test_pending_records_outlive_the_sink_and_are_written_after_restart(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "spool"
    database = DownSink()
    sink = RetryingCallSink(database, initial_delay=0.01, max_delay=0.02,
                            spool=Spool(directory))
    assert await sink.open_spool() == 0
    sink.start()
    for n in range(5):
        await sink.save_call(call(f"1.{n}"))  # in progress …
        await sink.save_call(call(f"1.{n}", outcome=CallOutcome.ABANDONED))  # … then final
    await sink.stop(flush_timeout=0.1)  # the database never came back
    assert database.saved == {}
    assert len(read_spool(directory)) == 10

    database.up = True
    restarted = RetryingCallSink(database, initial_delay=0.01, spool=Spool(directory))
    assert await restarted.open_spool() == 10
    restarted.start()
    async with asyncio.timeout(10):
        while restarted.pending:  # noqa: ASYNC110 (the writer offers no event to wait for)
            await asyncio.sleep(0.01)
    await restarted.stop()
    assert sorted(database.saved) == [f"pbx1:1796000000:1.{n}" for n in range(5)]
    assert {r.outcome for r in database.saved.values()} == {CallOutcome.ABANDONED}
    assert read_spool(directory) == []  # what the database has is gone from disk
    assert not directory.exists()  # and an empty spool leaves nothing behind


async def test_a_spooled_sink_releases_as_it_writes(tmp_path: Path) -> None:
    database = DownSink()
    database.up = True
    spool = Spool(tmp_path / "spool")
    sink = RetryingCallSink(database, spool=spool)
    await sink.open_spool()
    sink.start()
    for n in range(50):
        await sink.save_call(call(f"2.{n}"))
    async with asyncio.timeout(10):
        while sink.pending or read_spool(tmp_path / "spool"):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await sink.stop()
    assert len(database.saved) == 50
