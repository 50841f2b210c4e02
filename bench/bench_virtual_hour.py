"""Wall time of an hour of held polls, replayed in virtual time.

A fake server replays fixtures/chat_session.jsonl and the real LongPoll
client polls it over loopback sockets for one virtual hour: three
minutes of recorded updates, then polls held for the whole `wait` each.
Trio's MockClock jumps over every idle moment.

Run by hand:  uv run python bench/bench_virtual_hour.py [--hours 1]
"""

import argparse
import statistics
import time
from pathlib import Path

import trio
import trio.testing

from lprecord import open_fake_server
from lptrio import LongPoll

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "chat_session.jsonl"


async def one_run(seconds: float) -> tuple[int, int]:
    """Poll for `seconds` of virtual time; return the updates and the requests made."""
    requests = 0

    class Count:
        def exchange(self, *_args: object, **_fields: object) -> None:
            nonlocal requests
            requests += 1

    async with open_fake_server(FIXTURE) as server:
        longpoll = LongPoll("bench-token-0123456789", api_url=server.api_url, observer=Count())
        updates = 0
        with trio.move_on_after(seconds):
            async for _update in longpoll:
                updates += 1
        await longpoll.aclose()
    return updates, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    walls = []
    for _ in range(args.runs):
        started = time.perf_counter()
        updates, requests = trio.run(
            one_run, args.hours * 3600, clock=trio.testing.MockClock(autojump_threshold=0)
        )
        walls.append(time.perf_counter() - started)
    print(f"virtual time:  {args.hours:g} h; {updates} updates, {requests} requests per run")
    print(f"wall time:     median {statistics.median(walls):.3f} s over {args.runs} runs")


if __name__ == "__main__":
    main()
