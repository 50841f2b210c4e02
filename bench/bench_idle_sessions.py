"""Memory per idle LongPoll: N sessions held in a poll against one fake server.

The fake server runs in a child process (`lprecord replay`), so the
figures are the client's alone. Each session gets a long poll server,
receives the replayed session's updates, and then sits in a held poll.
Memory is read before the sessions start and while all of them are
held: the process's resident set (VmRSS) in one run, and in a second run
the Python heap as tracemalloc counts it (tracemalloc's own bookkeeping
inflates RSS, so the two are not measured together).

With --tls the server speaks HTTPS and every session trusts its CA
through one shared `ssl.SSLContext`, as sessions without a context of
their own share lptrio's default one.

Run by hand:  uv run python bench/bench_idle_sessions.py [--sessions 1000] [--tls]
"""

import argparse
import gc
import os
import ssl
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import trio
from bench_common import rss_kib, write_one_update_fixture

from lptrio import LongPoll

TOKEN = "bench-token-0123456789abcdefghij"


def measure() -> int:
    """Return the heap size in KiB when tracemalloc runs, else the RSS in KiB."""
    gc.collect()
    if tracemalloc.is_tracing():
        return tracemalloc.get_traced_memory()[0] // 1024
    return rss_kib()


async def hold_sessions(
    api_url: str, count: int, settle: float, context: ssl.SSLContext | None
) -> tuple[int, int]:
    """Return how many sessions are polling and the memory growth in KiB."""
    sessions = [
        LongPoll(f"{TOKEN}{number}", api_url=api_url, wait=90, ssl_context=context)
        for number in range(count)
    ]

    async def run(longpoll: LongPoll) -> None:
        async for _update in longpoll:
            pass

    before = measure()
    async with trio.open_nursery() as nursery:
        for longpoll in sessions:
            nursery.start_soon(run, longpoll)
        await trio.sleep(settle)
        after = measure()
        polling = sum(1 for longpoll in sessions if longpoll.server is not None)
        nursery.cancel_scope.cancel()
    return polling, after - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument(
        "--settle", type=float, default=8.0, help="seconds to let sessions reach a held poll"
    )
    parser.add_argument("--tls", action="store_true", help="serve and poll over HTTPS")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        fixture = Path(folder) / "one_update.jsonl"
        write_one_update_fixture(fixture)
        ca = Path(folder) / "ca.pem"
        tls = ["--tls", "--ca-out", str(ca)] if args.tls else []
        server = subprocess.Popen(
            [sys.executable, "-m", "lprecord", "replay", str(fixture), "--port", "0", *tls],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None
            api_url = server.stdout.readline().strip()
            context = ssl.create_default_context(cafile=ca) if args.tls else None
            started = time.perf_counter()
            polling, rss = trio.run(hold_sessions, api_url, args.sessions, args.settle, context)
            tracemalloc.start()
            _, heap = trio.run(hold_sessions, api_url, args.sessions, args.settle, context)
            tracemalloc.stop()
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=10)

    count = args.sessions
    scheme = "HTTPS" if args.tls else "plain HTTP"
    print(f"sessions:            {count} over {scheme} ({polling} held in a poll when measured)")
    print(f"RSS growth:          {rss} KiB total, {rss / count:.1f} KiB per session")
    print(f"Python heap growth:  {heap} KiB total, {heap / count:.1f} KiB per session")
    print(f"wall time:           {elapsed:.1f} s")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
