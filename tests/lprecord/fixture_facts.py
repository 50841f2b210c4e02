"""What the shipped fixtures contain, counted here without lprecord's summary or timeline."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from lprecord import ExchangeKind, read_fixture
from lptrio import LongPoll

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CHAT_SESSION = FIXTURES / "chat_session.jsonl"
FAILURES_SESSION = FIXTURES / "failures_session.jsonl"


def poll_replies(path: Path) -> list[Any]:
    """Return the parsed JSON body of every poll response in a fixture, in order."""
    return [
        exchange.json_body()
        for exchange in read_fixture(path).exchanges
        if exchange.kind is ExchangeKind.POLL and exchange.status is not None
    ]


def update_arrays(path: Path) -> list[Any]:
    """Return every update array of a fixture's successful poll replies, in order."""
    arrays: list[Any] = []
    for reply in poll_replies(path):
        if isinstance(reply, dict) and "failed" not in reply:
            arrays.extend(reply.get("updates", []))
    return arrays


@dataclass(slots=True, kw_only=True)
class RecordedCounts:
    """Counts over one fixture, as `lprecord show` is expected to print them."""

    polls: int = 0
    updates: int = 0
    failed: Counter[int] = field(default_factory=Counter)
    ts_values: list[int] = field(default_factory=list)


def count_recorded(path: Path) -> RecordedCounts:
    """Count the polls, updates, failed replies and ts values of a fixture with JSON replies."""
    counts = RecordedCounts()
    for exchange in read_fixture(path).exchanges:
        reply = exchange.json_body()
        if not isinstance(reply, dict):
            continue
        if exchange.kind is ExchangeKind.API:
            counts.ts_values.append(reply["response"]["ts"])
            continue
        counts.polls += 1
        if "ts" in reply:
            counts.ts_values.append(reply["ts"])
        if "failed" in reply:
            counts.failed[reply["failed"]] += 1
        else:
            counts.updates += len(reply["updates"])
    return counts


async def receive_updates(
    api_url: str, count: int, *, timeout: float, cafile: str | None = None
) -> list[Any]:
    """Consume a fake server with the real client until `count` updates arrive.

    Raises trio.TooSlowError after `timeout` seconds on trio's clock.
    """
    longpoll = LongPoll("consumer-test-token-5c2e9a71", api_url=api_url, cafile=cafile)
    received: list[Any] = []
    with trio.fail_after(timeout):
        async for update in longpoll:
            received.append(update.raw)
            if len(received) == count:
                break
    await longpoll.aclose()
    return received
