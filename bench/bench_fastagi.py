"""FastAGI servers side by side: ours, panoramisk's, and a plain asyncio floor.

    .venv/bin/python bench/bench_fastagi.py                 # 5 interleaved rounds
    .venv/bin/python bench/bench_fastagi.py --before main --rounds 7   # + the old server
    .venv/bin/python bench/bench_fastagi.py --latency-only  # the 2,000-call run only
    BENCH_PROFILE=/tmp/agi.prof .venv/bin/python bench/bench_fastagi.py  # cProfile each server

Every server runs in its own process and serves the same three-command session
(ANSWER, GET DATA, SET VARIABLE); the client is one uvloop process that speaks
like Asterisk (environment block, then one reply per command). The servers:

- ``ours``: ``ivr.server.FastAgiServer`` with a route calling
  ``session.answer()``, ``get_data()``, ``set_variable()``;
- ``before`` (with ``--before main``): ``ivr/server.py`` as it was at that revision;
- ``panoramisk``: panoramisk 1.4's ``Application`` on ``asyncio.start_server``;
- ``floor``: a plain asyncio-streams server: read the block, write three lines,
  read three replies, close (no parsing, no limits: the cost of the loop itself).

Each kind runs on the stock asyncio loop and, when uvloop is installed, on
uvloop (``hotline run`` runs ours on uvloop when it is installed: the "fast"
extra). All but ``before`` listen with ours' backlog: asyncio's default of 100
overflows with 200 callers connecting at once, and each overflow costs a
caller a second. Besides sessions/s, each server's CPU time per session is
reported (from /proc): on a shared machine it moves less than wall time.
Rounds are interleaved (every server once per round, in a rotating order) so
that a busy neighbour on a shared machine hits all of them alike; the ratios
are taken within a round and their medians reported.

The latency run: ``--calls`` concurrent calls (2,000) whose "Asterisk" answers
each command after 1–3 s, as a caller listening to a prompt; what is measured
is the server's turnaround: from the reply written to the next command read
(and from the environment written to the first command), p50/p99 over all.

Figures, not pass/fail; the machine's load shows in them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENV_BLOCK = "".join(
    f"{key}: {value}\n"
    for key, value in {
        "agi_network": "yes",
        "agi_network_script": "bench",
        "agi_request": "agi://127.0.0.1/bench",
        "agi_channel": "PJSIP/trunk-00000001",
        "agi_language": "uk",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1714000000.42",
        "agi_version": "22.10.1",
        "agi_callerid": "380441234567",
        "agi_calleridname": "Олена Петренко",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "1551",
        "agi_rdnis": "unknown",
        "agi_context": "hotline-inbound",
        "agi_extension": "1551",
        "agi_priority": "3",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140245171255872",
    }.items()
).encode() + b"\n"
COMMANDS = (b"ANSWER", b'GET DATA "hotline-menu" 3000 1', b'SET VARIABLE "HOTLINE_QUEUE" "housing"')
REPLIES = {b"ANSWER": b"200 result=0\n", b"GET": b"200 result=1\n", b"SET": b"200 result=1\n"}


# --- servers (each in its own process) -------------------------------------------


async def serve_ours(host: str, max_sessions: int) -> int:
    import ivr.server

    return await _serve_module(ivr.server, host, max_sessions)


async def serve_before(host: str, max_sessions: int) -> int:
    """``ivr/server.py`` as it was at ``--before`` (a git revision, written to
    ``BENCH_BEFORE_FILE``), for the improvement in the same run; it imports
    today's ``ivr.agi_protocol``."""
    import importlib.util

    path = os.environ["BENCH_BEFORE_FILE"]
    spec = importlib.util.spec_from_file_location("server_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return await _serve_module(module, host, max_sessions)


async def _serve_module(module: Any, host: str, max_sessions: int) -> int:
    async def route(session: Any) -> None:
        await session.answer()
        await session.get_data("hotline-menu", 3000, 1)
        await session.set_variable("HOTLINE_QUEUE", "housing")

    server = module.FastAgiServer({"bench": route}, host, 0, max_sessions=max_sessions)
    await server.start()
    _keep.append(server)
    return int(server.port)


async def serve_panoramisk(host: str, max_sessions: int) -> int:
    from panoramisk.fast_agi import Application

    async def route(request: Any) -> None:
        for command in COMMANDS:
            await request.send_command(command.decode())

    app = Application()
    app.add_route("bench", route)
    server = await asyncio.start_server(app.handler, host, 0, backlog=_backlog(max_sessions))
    _keep.append(server)
    return int(server.sockets[0].getsockname()[1])


async def serve_floor(host: str, max_sessions: int) -> int:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\n\n")
            for command in COMMANDS:
                writer.write(command + b"\n")
                await reader.readline()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0, backlog=_backlog(max_sessions))
    _keep.append(server)
    return int(server.sockets[0].getsockname()[1])


def _backlog(max_sessions: int) -> int:
    """The listen backlog ours uses: with asyncio's default of 100, 200 callers
    connecting at once overflow the accept queue and each overflow costs its
    caller a second (a SYN retransmitted), which measures the queue, not the
    server. ``before`` keeps the 100 it had."""
    from ivr.server import MAX_BACKLOG

    return max(100, min(max_sessions, MAX_BACKLOG))


SERVERS: dict[str, Callable[[str, int], Any]] = {
    "ours": serve_ours, "before": serve_before, "panoramisk": serve_panoramisk,
    "floor": serve_floor,
}
_keep: list[object] = []


def run_server(kind: str, loop_name: str, max_sessions: int) -> None:
    """Serve until standard input closes; the port goes to standard output."""
    from hotline.core.logs import configure_logging

    configure_logging("json", "warning")  # per-session info lines would dominate

    async def main() -> None:
        port = await SERVERS[kind]("127.0.0.1", max_sessions)
        print(port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # the bench closes it to stop us

    profile_to = os.environ.get("BENCH_PROFILE")  # cProfile the server into this file
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if loop_name == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile_to}.{kind}.{loop_name}")


class Server:
    def __init__(self, kind: str, loop_name: str, max_sessions: int) -> None:
        self.name = f"{kind}/{loop_name}"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", kind, loop_name, str(max_sessions)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the client: Asterisk as seen by a FastAGI server -----------------------------


class Call(asyncio.Protocol):
    """One FastAGI connection from Asterisk's side. ``delay`` (s) is how long
    each reply takes (a prompt playing); ``latencies`` collects the server's
    turnaround from our last write to its next command."""

    def __init__(
        self, done: asyncio.Future[int], delay: Callable[[], float] | None = None,
        latencies: list[float] | None = None, first: list[float] | None = None,
    ) -> None:
        self.done = done
        self.delay = delay
        self.latencies = latencies
        self.first = first  # environment written → first command
        self.buf = b""
        self.commands = 0
        self.sent_at = 0.0
        self.transport: Any = None  # uvloop's transports are no asyncio.Transport subclass
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.sent_at = time.perf_counter()
        self.transport.write(ENV_BLOCK)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        while (end := self.buf.find(b"\n")) >= 0:
            line, self.buf = self.buf[:end], self.buf[end + 1 :]
            if line != COMMANDS[self.commands]:
                raise AssertionError(f"unexpected command {line!r}")
            self.commands += 1
            reply = REPLIES[line.partition(b" ")[0]]
            if self.commands == 1 and self.first is not None:
                self.first.append(now - self.sent_at)
            elif self.commands > 1 and self.latencies is not None:
                self.latencies.append(now - self.sent_at)
            if self.delay is None:
                self._reply(reply)
            else:
                self.loop.call_later(self.delay(), self._reply, reply)

    def _reply(self, reply: bytes) -> None:
        if not self.transport.is_closing():
            self.sent_at = time.perf_counter()
            self.transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.commands)


async def one_call(
    port: int, delay: Callable[[], float] | None = None, latencies: list[float] | None = None,
    first: list[float] | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    await loop.create_connection(lambda: Call(done, delay, latencies, first), "127.0.0.1", port)
    return await done


async def throughput(port: int, sessions: int, concurrency: int) -> float:
    """Sessions per second: ``concurrency`` callers, each calling again at once."""
    left = sessions
    complete = 0

    async def caller() -> None:
        nonlocal left, complete
        while left > 0:
            left -= 1
            if await one_call(port) == len(COMMANDS):
                complete += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    if complete != sessions:
        raise AssertionError(f"{sessions - complete} of {sessions} sessions incomplete")
    return sessions / elapsed


async def latency(
    port: int, calls: int, seconds: float, ramp: float
) -> tuple[list[float], list[float], list[float]]:
    """``calls`` concurrent callers for ``seconds``, started over ``ramp`` seconds.

    Returns (reply → next command, environment → first command, the client's
    own loop lag): what the client measures includes its own scheduling, so
    its lag (a 10 ms ticker's lateness) is reported beside the figures.
    """
    latencies: list[float] = []
    first: list[float] = []
    lag: list[float] = []
    rng = random.Random(1551)
    stop_at = time.perf_counter() + seconds

    async def caller(start_after: float) -> None:
        await asyncio.sleep(start_after)
        while time.perf_counter() < stop_at:
            answered = await one_call(port, lambda: rng.uniform(1.0, 3.0), latencies, first)
            if answered != len(COMMANDS):
                raise AssertionError("a session ended early")

    async def ticker() -> None:
        while time.perf_counter() < stop_at:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lag.append(time.perf_counter() - before - 0.01)

    await asyncio.gather(ticker(), *(caller(ramp * n / calls) for n in range(calls)))
    return latencies, first, lag


# --- the runs ------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bench_throughput(args: argparse.Namespace, loops: list[str]) -> None:
    kinds = [(kind, loop) for loop in loops for kind in SERVERS
             if kind != "before" or args.before]
    servers = {f"{k}/{lp}": Server(k, lp, args.concurrency * 2) for k, lp in kinds}
    rates: dict[str, list[float]] = {name: [] for name in servers}
    cpu_us: dict[str, list[float]] = {name: [] for name in servers}
    client_us: dict[str, list[float]] = {name: [] for name in servers}
    ratios: dict[str, list[float]] = {}
    cpu_ratios: dict[str, list[float]] = {}  # sessions per server CPU second
    try:
        for round_no in range(args.rounds):
            order = list(servers)
            shift = round_no % len(order)
            order = order[shift:] + order[:shift]
            for name in order:
                cpu_before, client_before = servers[name].cpu_seconds(), time.process_time()
                rate = asyncio.run(throughput(servers[name].port, args.sessions, args.concurrency))
                cpu = servers[name].cpu_seconds() - cpu_before
                client_us[name].append((time.process_time() - client_before) / args.sessions * 1e6)
                rates[name].append(rate)
                cpu_us[name].append(cpu / args.sessions * 1e6)
            line = "  ".join(f"{name} {rates[name][-1]:7,.0f}" for name in servers)
            print(f"round {round_no + 1}: {line}", flush=True)
            for ours in [n for n in servers if n.startswith("ours/")]:
                for other in [n for n in servers if not n.startswith("ours/")]:
                    ratios.setdefault(f"{ours} / {other}", []).append(
                        rates[ours][-1] / rates[other][-1]
                    )
                    cpu_ratios.setdefault(f"{ours} / {other}", []).append(
                        cpu_us[other][-1] / max(cpu_us[ours][-1], 1e-9)
                    )
    finally:
        for server in servers.values():
            server.stop()
    print(f"\nsessions/s, median of {args.rounds} rounds "
          f"({args.sessions} sessions, {args.concurrency} concurrent, uvloop client):")
    for name, values in rates.items():
        print(f"  {name:18s} {median(values):8,.0f}   (min {min(values):,.0f}, "
              f"max {max(values):,.0f});  CPU µs/session: server {median(cpu_us[name]):4.0f}, "
              f"client {median(client_us[name]):4.0f}")
    print("ratios, median of per-round ratios: sessions/s, and sessions per server CPU second")
    for name, values in ratios.items():
        print(f"  {name:34s} {median(values):5.2f}x   {median(cpu_ratios[name]):5.2f}x")


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile, in ms, of values in seconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else 0.0


def bench_latency(args: argparse.Namespace) -> None:
    """Ours and the floor alternately (same client, same machine load)."""
    print(f"\nlatency: {args.calls} concurrent calls, 1–3 s between commands, "
          f"{args.seconds:.0f} s per run (ms):")
    p99: dict[str, list[float]] = {}
    for _ in range(args.latency_rounds):
        for kind, loop_name in [("ours", lp) for lp in args.latency_loops] + [
            ("floor", args.latency_loops[0])
        ]:
            server = Server(kind, loop_name, args.calls + 100)
            try:
                commands, first, lag = asyncio.run(
                    latency(server.port, args.calls, args.seconds, args.ramp)
                )
            finally:
                server.stop()
            p99.setdefault(server.name, []).append(pct(commands, 99))
            print(f"  {server.name:14s} {len(commands):6d} commands: p50 {pct(commands, 50):6.2f}"
                  f"  p99 {pct(commands, 99):7.2f}  max {pct(commands, 100):7.2f};  "
                  f"first command p99 {pct(first, 99):7.2f};  "
                  f"client loop lag p50 {pct(lag, 50):5.2f} p99 {pct(lag, 99):6.2f}", flush=True)
    print("  median p99: " + ", ".join(f"{n} {median(v):.2f} ms" for n, v in p99.items()))


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        run_server(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--ramp", type=float, default=3.0)
    parser.add_argument("--latency-rounds", type=int, default=2)
    parser.add_argument("--latency-loops", default="uvloop",
                        help="loops to run our server on in the latency run (the floor: the first)")
    parser.add_argument("--loops", default="asyncio,uvloop",
                        help="server loops to compare (uvloop only if installed)")
    parser.add_argument("--before", metavar="REV",
                        help="also run ivr/server.py as it was at this git revision (e.g. main)")
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--throughput-only", action="store_true")
    args = parser.parse_args()
    if not _has_uvloop():
        sys.exit("the client needs uvloop: pip install uvloop (the 'fast' extra)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # the client
    loops = [lp for lp in args.loops.split(",") if lp != "uvloop" or _has_uvloop()]
    args.latency_loops = [lp for lp in args.latency_loops.split(",") if lp in loops] or loops
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}", flush=True)
    if args.before:
        source = subprocess.run(["git", "show", f"{args.before}:ivr/server.py"],
                                cwd=ROOT, check=True, capture_output=True, text=True).stdout
        path = Path(tempfile.mkdtemp(prefix="bench-fastagi-")) / "server_before.py"
        path.write_text(source)
        os.environ["BENCH_BEFORE_FILE"] = str(path)  # the server processes inherit it
    if not args.latency_only:
        bench_throughput(args, loops)
    if not args.throughput_only:
        bench_latency(args)


if __name__ == "__main__":
    main()
