"""Soak: many LongPolls against one fake server with random faults, in real time.

One `lprecord.FakeServer` runs in a child process on 127.0.0.1 (plain HTTP unless --tls)
and serves a generated session of one account: a steady stream of message, read, presence,
typing and counter events, one batch every --update-interval seconds on average, for
--minutes of real time. The fake server keeps one timeline per server, so all consumers are
`lptrio.LongPoll`s of that same account, and each of them must receive every update.

The server injects a seeded random fault schedule (`FaultSchedule.random`). It mixes failed
1, 2 and 3, API errors 1, 6 and 10, HTTP 5xx replies with an HTML page and empty 200 replies.
It also truncates bodies, resets connections before and after the headers, dribbles bodies,
and stalls for longer than the client's timeouts. Each fault fires once, on the first
request to its endpoint after its time. failed 2 and 3 also invalidate every key the server
issued, so every consumer then gets failed 2 and requests a new key.

After the stream ends, the consumers get up to --drain seconds to catch up, and then shut
down. The report counts, per consumer and in total: updates delivered and expected,
duplicates, updates delivered out of order, updates missing inside an `EventsLost` range that
covers them (reported losses), updates missing with no such report (losses), requests per
minute, and the memory trend (RSS, heap blocks, open file descriptors) sampled every minute.
A line goes to stderr every minute while it runs. The exit status is 1 when a loss, a
duplicate, an out-of-order or altered update, a crash or a stuck shutdown was seen.

Run by hand:  uv run python bench/bench_soak.py [--minutes 30] [--consumers 100] [--seed 1]
"""

import argparse
import bisect
import collections
import gc
import json
import logging
import math
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import trio

from lpcore import PTS_CODES, EventsLost, Request, RequestKind, Update
from lprecord import (
    Endpoint,
    Exchange,
    ExchangeKind,
    FakeServer,
    Fault,
    FaultKind,
    FaultSchedule,
    FixtureWriter,
    Header,
    ScheduledFault,
)
from lptrio import HttpResponse, LongPoll, TransportError

USER_ID = 100001
INITIAL_TS = 1_800_000_000
INITIAL_PTS = 500_000
#: Seconds from the first messages.getLongPollServer to the first update, so that every
#: consumer has its first ts before the stream starts.
FIRST_UPDATE_AT = 5.0
#: A date for the generated messages (2023-11-14); update i is dated i seconds later.
BASE_DATE = 1_700_000_000
PEERS = (100002, 100003, 100004, 2_000_000_007)
#: Event codes VK keeps in messages.getLongPollHistory, among those generated here. The
#: others (friend online 8, typing 61, unread counter 80) are lost for good when the long
#: poll server drops them.
PERSISTENT_CODES = PTS_CODES & {3, 4, 8, 61, 80}
#: Message events that getLongPollHistory returns cut to [code, message_id, flags, peer_id].
MESSAGE_CODES = frozenset({1, 2, 3, 4, 5})
#: lpcore's timeout for API calls (its `API_TIMEOUT`, which it does not export), in seconds.
API_TIMEOUT = 30.0
#: lpcore waits for a poll reply this much longer than `wait` (`POLL_TIMEOUT_MARGIN`).
POLL_TIMEOUT_MARGIN = 10.0
SAMPLE_PERIOD = 60.0
SHUTDOWN_TIMEOUT = 30.0

log = logging.getLogger("bench_soak")


# -- the generated session -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stream:
    """The updates the fake server publishes, in ts order, with their due times in seconds."""

    raws: list[list[Any]]
    due: list[float]
    #: (code, element 1) of each update, which identifies it in full and in history form.
    index_of: dict[tuple[int, int], int]

    @property
    def final_ts(self) -> int:
        return INITIAL_TS + len(self.raws)


def build_stream(seed: int, seconds: float, interval: float) -> Stream:
    """Generate batches of updates from FIRST_UPDATE_AT to `seconds`, on average `interval` apart.

    Batch gaps are exponential, and one batch in five carries 2 to 6 updates. Element 1 of
    every update is unique among the updates of its code, so it identifies the update even
    in the cut form getLongPollHistory returns.
    """
    rng = random.Random(seed)
    raws: list[list[Any]] = []
    due: list[float] = []
    unread: collections.deque[tuple[int, int]] = collections.deque()
    moment = FIRST_UPDATE_AT
    while moment < seconds:
        size = 1 if rng.random() < 0.8 else rng.randint(2, 6)
        for _ in range(size):
            raws.append(make_update(rng, len(raws), unread))
            due.append(moment)
        moment += rng.expovariate(1.0 / interval)
    index_of = {(raw[0], raw[1]): index for index, raw in enumerate(raws)}
    return Stream(raws=raws, due=due, index_of=index_of)


def make_update(
    rng: random.Random, index: int, unread: collections.deque[tuple[int, int]]
) -> list[Any]:
    """Return update number `index`: mostly new messages, then reads, presence and typing."""
    choice = rng.random()
    if choice < 0.15 and unread:
        message_id, peer_id = unread.popleft()
        return [3, message_id, 1, peer_id]  # MessageFlagsReset of UNREAD: the message was read
    if choice < 0.6:
        message_id = 1_000_000 + index
        peer_id = rng.choice(PEERS)
        outgoing = rng.random() < 0.3
        flags = 2 if outgoing else 1  # OUTBOX, or UNREAD for an incoming message
        extra: dict[str, str] = {"title": " ... "}
        if peer_id >= 2_000_000_000:
            extra = {"from": str(rng.choice(PEERS[:3]))}
        if not outgoing:
            unread.append((message_id, peer_id))
        text = f"soak message {index} &lt;{rng.randint(0, 999)}&gt;"
        return [4, message_id, flags, peer_id, BASE_DATE + index, text, extra, {}, index]
    if choice < 0.75:
        return [8, -(200_000 + index), 7, BASE_DATE + index]  # FriendOnline, platform 7
    if choice < 0.9:
        return [61, 300_000 + index, 1]  # UserTyping
    return [80, index, 0]  # UnreadCount


def history_form(raw: list[Any]) -> list[Any]:
    """Return `raw` as the fake server's getLongPollHistory lists it."""
    return raw[:4] if raw[0] in MESSAGE_CODES else raw


def write_stream_fixture(path: Path, stream: Stream, wait: int) -> None:
    """Write the stream as a recorded session: one getLongPollServer, then one poll per batch."""
    header = Header(
        lp_version=3,
        mode=234,
        wait=wait,
        api_version="5.199",
        user_id=USER_ID,
        source="generated by bench/bench_soak.py",
    )
    server = {"key": "<redacted>", "server": f"im.vk.com/nim{USER_ID}", "ts": INITIAL_TS}
    server["pts"] = INITIAL_PTS
    batches: dict[float, list[list[Any]]] = {}
    for raw, moment in zip(stream.raws, stream.due, strict=True):
        batches.setdefault(moment, []).append(raw)

    with FixtureWriter.create(path, header, overwrite=True) as writer:
        writer.append(
            Exchange(
                t=0.0,
                elapsed=0.0,
                kind=ExchangeKind.API,
                method="POST",
                url="https://api.vk.com/method/messages.getLongPollServer",
                params={"v": "5.199", "need_pts": "1", "lp_version": "3"},
                status=200,
                body=json.dumps({"response": server}).encode(),
            )
        )
        ts, pts = INITIAL_TS, INITIAL_PTS
        for moment, batch in batches.items():
            ts += len(batch)
            pts += sum(1 for raw in batch if raw[0] in PERSISTENT_CODES)
            body = {"ts": ts, "pts": pts, "updates": batch}
            writer.append(
                Exchange(
                    t=moment,
                    elapsed=0.0,
                    kind=ExchangeKind.POLL,
                    method="GET",
                    url=f"https://im.vk.com/nim{USER_ID}",
                    params={"act": "a_check", "wait": str(wait), "mode": "234", "version": "3"},
                    status=200,
                    body=json.dumps(body, ensure_ascii=False).encode(),
                )
            )


def build_fault_schedule(
    seed: int, seconds: float, per_minute: float, stall_seconds: float
) -> FaultSchedule:
    """Draw faults with `FaultSchedule.random` and spread them evenly over `seconds`.

    `random` triggers half of its faults by request number. Request numbers count every
    consumer's requests together, so those faults would all fire in the first seconds; they
    get a random time instead.
    """
    count = round(per_minute * seconds / 60.0)
    drawn = FaultSchedule.random(seed, count=count, max_time=seconds, stall_seconds=stall_seconds)
    rng = random.Random(f"{seed}:fault times")
    timed = [
        scheduled
        if scheduled.at_time is not None
        else ScheduledFault(
            fault=scheduled.fault, on=scheduled.on, at_time=round(rng.uniform(0, seconds), 3)
        )
        for scheduled in drawn
    ]
    return FaultSchedule(tuple(sorted(timed, key=lambda scheduled: scheduled.at_time or 0.0)))


def describe_fault(fault: Fault) -> str:
    if fault.kind is FaultKind.FAILED:
        return f"failed {fault.code}"
    if fault.kind is FaultKind.API_ERROR:
        return f"API error {fault.code}"
    if fault.kind is FaultKind.HTTP_ERROR:
        return f"HTTP {fault.status}"
    return str(fault.kind)


# -- the fake server in a child process ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerOptions:
    fixture: str
    faults: dict[str, Any]
    key_ttl: float
    ca_path: str | None


def serve_in_child(options: ServerOptions, connection: Connection) -> None:
    """Serve until the parent sends anything or goes away, then send back the fault counts."""
    trio.run(_serve_until_stopped, options, connection)


async def _serve_until_stopped(options: ServerOptions, connection: Connection) -> None:
    server = FakeServer(
        options.fixture,
        tls=options.ca_path is not None,
        key_ttl=options.key_ttl,
        faults=FaultSchedule.from_json(options.faults),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        if options.ca_path is not None:
            server.write_ca(options.ca_path)
        connection.send(server.api_url)
        try:
            # Abandoned on cancellation, so that a server error ends the child at once.
            await trio.to_thread.run_sync(connection.recv, abandon_on_cancel=True)
        except EOFError:
            return  # the parent exited, so no report can be sent
        fired = collections.Counter(
            f"{describe_fault(entry.fault)} on {entry.scheduled.on}"
            for entry in server.fired_faults
        )
        pending = collections.Counter(
            f"{describe_fault(scheduled.fault)} on {scheduled.on}"
            for scheduled in server.pending_faults
        )
        requests = {str(endpoint): server.engine.faults.count(endpoint) for endpoint in Endpoint}
        connection.send(
            {
                "fired": dict(fired),
                "pending": dict(pending),
                "requests per endpoint": requests,
            }
        )
        nursery.cancel_scope.cancel()


# -- the consumers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gap:
    """An `EventsLost` report: events after `from_ts` and before `to_ts` may be missing."""

    from_ts: int
    to_ts: int
    persistent_recovered: bool

    def covers(self, index: int, code: int) -> bool:
        if not self.from_ts <= INITIAL_TS + index < self.to_ts:
            return False
        return not self.persistent_recovered or code not in PERSISTENT_CODES


@dataclass
class Consumer:
    """One LongPoll and everything seen of it: deliveries, reported losses, requests."""

    number: int
    stream: Stream
    started: float
    longpoll: LongPoll | None = None
    #: The ts of its first poll: updates from there on are expected.
    start_ts: int | None = None
    counts: bytearray = field(default_factory=bytearray)
    delivered: int = 0
    recovered: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    altered: int = 0
    unknown: int = 0
    last_index: int = -1
    gaps: list[Gap] = field(default_factory=list)
    requests_by_minute: collections.Counter[int] = field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    #: The last exchanges, to show what a consumer that fell behind was doing.
    recent: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))
    #: The resume point right before shutdown: updates after it were not delivered yet.
    stop_ts: int | None = None
    crash: str | None = None
    finished: bool = False

    def __post_init__(self) -> None:
        self.counts = bytearray(len(self.stream.raws))

    def take(self, update: Update) -> None:
        raw = update.raw
        key = (raw[0], raw[1]) if isinstance(raw, list) and len(raw) > 1 else None
        index = self.stream.index_of.get(key) if key is not None else None
        if index is None:
            self.unknown += 1
            return
        expected = self.stream.raws[index]
        if raw != (history_form(expected) if update.recovered else expected):
            self.altered += 1
        if self.counts[index]:
            self.duplicates += 1
        elif index < self.last_index:
            self.out_of_order += 1
        self.counts[index] = min(self.counts[index] + 1, 255)
        self.last_index = max(self.last_index, index)
        self.delivered += 1
        self.recovered += update.recovered

    def lost(self, event: EventsLost) -> None:
        self.gaps.append(Gap(event.from_ts, event.to_ts, event.persistent_recovered))

    def exchange(
        self,
        request: Request,
        *,
        started: float,
        finished: float,
        response: HttpResponse | None,
        error: TransportError | None,
    ) -> None:
        self.requests_by_minute[int((started - self.started) // 60)] += 1
        if request.kind is RequestKind.POLL and self.start_ts is None:
            self.start_ts = int(request.params["ts"])
        outcome = classify(request, response, error)
        self.outcomes[f"{request.kind}: {outcome}"] += 1
        asked = {key: request.params[key] for key in ("ts", "pts") if key in request.params}
        self.recent.append(
            f"{started - self.started:8.1f} s  {request.kind} {asked} -> {outcome} "
            f"after {finished - started:.1f} s"
        )

    def caught_up(self) -> bool:
        """Return whether the consumer's checkpoint has passed the stream's last update."""
        if self.crash is not None or self.longpoll is None:
            return True
        checkpoint = self.longpoll.checkpoint()
        return (
            checkpoint is not None
            and checkpoint.ts >= self.stream.final_ts
            and checkpoint.skip == 0
        )


def classify(request: Request, response: HttpResponse | None, error: TransportError | None) -> str:
    """Name the outcome of one exchange: ok, or the fault the client saw."""
    if error is not None:
        return str(error.kind)
    assert response is not None
    if response.status != 200:
        return f"HTTP {response.status}"
    body = response.body
    if not body:
        return "empty body"
    if request.kind is RequestKind.POLL and b'"failed"' in body[:32]:
        failed = json.loads(body).get("failed")
        return f"failed {failed}"
    if request.kind is not RequestKind.POLL and body.startswith(b'{"error"'):
        try:
            return f"API error {json.loads(body)['error']['error_code']}"
        except (ValueError, KeyError, TypeError):
            return "unreadable API error"
    return "ok"


async def consume(consumer: Consumer, longpoll: LongPoll) -> None:
    try:
        async with longpoll:
            async for update in longpoll:
                consumer.take(update)
    except Exception as error:  # reported at the end; the other consumers go on
        consumer.crash = f"{type(error).__name__}: {error}"
        log.exception("consumer %d crashed", consumer.number)
    finally:
        consumer.finished = True


class LogCounter(logging.Handler):
    """Log handler that counts lptrio's records by level, because retries would flood stderr."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1
        if record.levelno >= logging.ERROR and self.counts[record.levelname] <= 20:
            print(f"lptrio {record.levelname}: {record.getMessage()}", file=sys.stderr)


# -- memory samples ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    minute: float
    rss_kib: int
    heap_blocks: int
    traced_kib: int | None
    fds: int
    server_rss_kib: int | None


def proc_status_kib(pid: int | str, field_name: str) -> int | None:
    """Return a `VmRSS`-style field of /proc/PID/status in KiB, or None when unreadable."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    return None


def take_sample(minute: float, server_pid: int | None) -> Sample:
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] // 1024 if tracemalloc.is_tracing() else None
    return Sample(
        minute=minute,
        rss_kib=proc_status_kib("self", "VmRSS") or 0,
        heap_blocks=sys.getallocatedblocks(),
        traced_kib=traced,
        fds=len(os.listdir("/proc/self/fd")),
        server_rss_kib=None if server_pid is None else proc_status_kib(server_pid, "VmRSS"),
    )


def slope_per_minute(samples: Sequence[Sample], value: str) -> float:
    """Least-squares slope of `value` over the samples, per minute; nan with fewer than 2."""
    points = [(s.minute, getattr(s, value)) for s in samples if getattr(s, value) is not None]
    if len(points) < 2:
        return math.nan
    minutes, values = zip(*points, strict=True)
    return statistics.linear_regression(minutes, values).slope


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Run:
    """Results of one soak run, as `report` prints them."""

    consumers: list[Consumer]
    #: Taken at the start, before any consumer exists, and then every minute while they run.
    samples: list[Sample]
    #: Taken after every consumer stopped and closed its connections.
    after: Sample
    server: dict[str, Any]
    drain_seconds: float
    shutdown_seconds: float
    stuck: int
    fds_before: int
    fds_after: int
    wall_seconds: float


async def run_soak(args: argparse.Namespace, stream: Stream, options: ServerOptions) -> Run:
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    child = context.Process(
        target=serve_in_child, args=(options, child_end), name="soak-fake-server", daemon=True
    )
    child.start()
    child_end.close()
    try:
        api_url: str = await trio.to_thread.run_sync(parent_end.recv)
    except EOFError:
        child.join()
        raise SystemExit(
            f"the fake server exited with status {child.exitcode} before serving"
        ) from None

    fds_before = len(os.listdir("/proc/self/fd"))
    samples = [take_sample(0.0, child.pid)]
    started = trio.current_time()
    wall_started = time.monotonic()
    consumers = [Consumer(number, stream, started) for number in range(args.consumers)]

    async with trio.open_nursery() as nursery:
        for consumer in consumers:
            longpoll = LongPoll(
                f"soak-token-{args.seed}-{consumer.number:03d}",
                api_url=api_url,
                wait=args.wait,
                cafile=options.ca_path,
                observer=consumer,
                seed=args.seed * 1000 + consumer.number,
            )
            longpoll.on_lost(consumer.lost)
            consumer.longpoll = longpoll
            nursery.start_soon(consume, consumer, longpoll)

        stream_end = started + args.minutes * 60.0
        next_sample = started + SAMPLE_PERIOD
        while True:
            await trio.sleep(1.0)
            now = trio.current_time()
            if now >= next_sample:
                samples.append(take_sample((now - started) / 60.0, child.pid))
                print_progress(consumers, stream, samples[-1], now - started)
                next_sample += SAMPLE_PERIOD
            if now >= stream_end and (
                all(c.caught_up() for c in consumers) or now >= stream_end + args.drain
            ):
                break
        drain_seconds = max(0.0, trio.current_time() - stream_end)

        stopping = trio.current_time()
        for consumer in consumers:
            assert consumer.longpoll is not None
            checkpoint = consumer.longpoll.checkpoint()
            consumer.stop_ts = None if checkpoint is None else checkpoint.ts
            consumer.longpoll.shutdown()
        with trio.move_on_after(SHUTDOWN_TIMEOUT):
            while not all(c.finished for c in consumers):
                await trio.sleep(0.05)
        shutdown_seconds = trio.current_time() - stopping
        stuck = sum(1 for c in consumers if not c.finished)
        if stuck:
            print(f"{stuck} consumers did not stop within {SHUTDOWN_TIMEOUT:g} s", file=sys.stderr)
            nursery.cancel_scope.cancel()

    wall_seconds = time.monotonic() - wall_started
    after = take_sample((trio.current_time() - started) / 60.0, child.pid)
    assert child.pid is not None
    server_report: dict[str, Any] = {"peak_rss_kib": proc_status_kib(child.pid, "VmHWM")}
    parent_end.send("stop")
    try:
        server_report |= await trio.to_thread.run_sync(parent_end.recv)
    except EOFError:
        server_report["error"] = f"the fake server exited with status {child.exitcode}"
    await trio.to_thread.run_sync(child.join, 10.0)
    fds_after = len(os.listdir("/proc/self/fd"))
    return Run(
        consumers=consumers,
        samples=samples,
        after=after,
        server=server_report,
        drain_seconds=drain_seconds,
        shutdown_seconds=shutdown_seconds,
        stuck=stuck,
        fds_before=fds_before,
        fds_after=fds_after,
        wall_seconds=wall_seconds,
    )


def print_progress(
    consumers: Sequence[Consumer], stream: Stream, sample: Sample, elapsed: float
) -> None:
    """Print one status line to stderr: delivery so far, request rate and memory."""
    due = bisect.bisect_right(stream.due, elapsed)
    minute = int(elapsed // 60) - 1
    expected = sum(max(0, due - (c.start_ts or INITIAL_TS) + INITIAL_TS) for c in consumers)
    delivered = sum(c.delivered for c in consumers)
    requests = [c.requests_by_minute[minute] for c in consumers]
    faults = sum(
        count
        for c in consumers
        for outcome, count in c.outcomes.items()
        if not outcome.endswith(": ok")
    )
    server = f"{sample.server_rss_kib / 1024:.1f} MiB" if sample.server_rss_kib else "gone"
    print(
        f"[{elapsed / 60:5.1f} min] {due} updates due; delivered {delivered:,} of {expected:,} "
        f"due; duplicates {sum(c.duplicates for c in consumers)}; "
        f"loss reports {sum(len(c.gaps) for c in consumers)}; "
        f"requests/consumer in minute {minute + 1}: mean {statistics.fmean(requests):.1f} "
        f"max {max(requests)}; faulty replies so far {faults:,}; "
        f"RSS {sample.rss_kib / 1024:.1f} MiB, heap {sample.heap_blocks:,} blocks, "
        f"fds {sample.fds}; server RSS {server}; "
        f"crashed {sum(1 for c in consumers if c.crash)}",
        file=sys.stderr,
        flush=True,
    )


# -- the report --------------------------------------------------------------------------------


@dataclass
class Tally:
    """One consumer's final figures."""

    expected: int = 0
    delivered_once: int = 0
    recovered: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    altered: int = 0
    unknown: int = 0
    reported_lost: int = 0
    lost: int = 0
    #: Missing after the consumer's resume point at shutdown: not delivered yet, not lost.
    behind: int = 0
    lost_indexes: list[int] = field(default_factory=list)


def tally(consumer: Consumer) -> Tally:
    stream = consumer.stream
    first = 0 if consumer.start_ts is None else consumer.start_ts - INITIAL_TS
    result = Tally(
        expected=len(stream.raws) - first,
        recovered=consumer.recovered,
        duplicates=consumer.duplicates,
        out_of_order=consumer.out_of_order,
        altered=consumer.altered,
        unknown=consumer.unknown + sum(1 for count in consumer.counts[:first] if count),
    )
    for index in range(first, len(stream.raws)):
        if consumer.counts[index]:
            result.delivered_once += 1
            continue
        code = stream.raws[index][0]
        if any(gap.covers(index, code) for gap in consumer.gaps):
            result.reported_lost += 1
        elif consumer.stop_ts is not None and INITIAL_TS + index >= consumer.stop_ts:
            result.behind += 1
        else:
            result.lost += 1
            result.lost_indexes.append(index)
    return result


def print_details(consumer: Consumer, t: Tally) -> None:
    """Print the lost ts ranges, the loss reports and the last exchanges of one consumer."""
    ranges: list[list[int]] = []
    for index in t.lost_indexes:
        if ranges and ranges[-1][1] == index - 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    print(f"\nconsumer {consumer.number}: {t.lost} lost, {t.behind} behind at shutdown")
    lost = ", ".join(f"{INITIAL_TS + first}-{INITIAL_TS + last + 1}" for first, last in ranges)
    print(f"  lost (ts ranges): {lost or '-'}")
    for gap in consumer.gaps:
        print(f"  EventsLost: {gap}")
    print("  last exchanges (seconds from the start):")
    for line in consumer.recent:
        print(f"    {line}")


def busy_minutes(consumer: Consumer, stream: Stream, wait: int) -> list[tuple[int, int]]:
    """Return the (minute, requests) of minutes with more requests than a busy-loop ceiling.

    A consumer needs at most about one poll per batch of updates and one per `wait` seconds
    without updates, plus a few requests per fault: the ceiling is three times the first
    two, plus 20.
    """
    batches = collections.Counter(int(moment // 60) for moment in sorted(set(stream.due)))
    flagged = []
    for minute, count in sorted(consumer.requests_by_minute.items()):
        ceiling = 3 * (batches[minute] + 60 / max(wait, 1)) + 20
        if count > ceiling:
            flagged.append((minute, count))
    return flagged


def report(args: argparse.Namespace, stream: Stream, schedule: FaultSchedule, run: Run) -> bool:
    """Print the final report to stdout; return whether every check passed."""
    tallies = [tally(consumer) for consumer in run.consumers]
    total_expected = sum(t.expected for t in tallies)
    total_delivered = sum(t.delivered_once for t in tallies)

    print("\n== per consumer ==")
    print(
        "consumer  expected  delivered  recovered  duplicates  out_of_order  altered  "
        "reported_lost  lost  behind  requests  req/min_max  first_ts  stop_ts  crash"
    )
    rates: list[float] = []
    peak_rates: list[int] = []
    for consumer, t in zip(run.consumers, tallies, strict=True):
        per_minute = consumer.requests_by_minute
        full = [per_minute[m] for m in range(int(args.minutes))] or list(per_minute.values())
        rates.append(statistics.fmean(full) if full else 0.0)
        peak_rates.append(max(per_minute.values(), default=0))
        print(
            f"{consumer.number:8d}  {t.expected:8d}  {t.delivered_once:9d}  {t.recovered:9d}  "
            f"{t.duplicates:10d}  {t.out_of_order:12d}  {t.altered:7d}  {t.reported_lost:13d}  "
            f"{t.lost:4d}  {t.behind:6d}  {sum(per_minute.values()):8d}  {peak_rates[-1]:11d}  "
            f"{consumer.start_ts}  {consumer.stop_ts}  {consumer.crash or '-'}"
        )
    for consumer, t in zip(run.consumers, tallies, strict=True):
        if t.lost or t.behind:
            print_details(consumer, t)

    outcomes: collections.Counter[str] = collections.Counter()
    for consumer in run.consumers:
        outcomes.update(consumer.outcomes)
    busy = [
        (consumer.number, minute, count)
        for consumer in run.consumers
        for minute, count in busy_minutes(consumer, stream, args.wait)
    ]
    late = sum(1 for c in run.consumers if c.start_ts != INITIAL_TS)
    crashed = [c for c in run.consumers if c.crash]

    print("\n== totals ==")
    print(f"setup: {args.consumers} consumers, {args.minutes:g} min, seed {args.seed}")
    print(f"       wait {args.wait} s, update interval {args.update_interval:g} s")
    print(f"       {len(schedule)} faults scheduled, key TTL {args.key_ttl:g} s, tls {args.tls}")
    print(f"updates published: {len(stream.raws)} in {len(set(stream.due))} batches")
    print(f"consumers that started after the first update: {late}")
    print(f"delivered (unique) / expected: {total_delivered:,} / {total_expected:,}")
    print(f"  of which recovered from history: {sum(t.recovered for t in tallies):,}")
    print(f"duplicates: {sum(t.duplicates for t in tallies)}")
    print(f"out of order: {sum(t.out_of_order for t in tallies)}")
    print(f"altered (differs from the published update): {sum(t.altered for t in tallies)}")
    print(f"not in the published stream: {sum(t.unknown for t in tallies)}")
    print(f"missing, inside a reported EventsLost range: {sum(t.reported_lost for t in tallies)}")
    print(f"missing, not reported (losses): {sum(t.lost for t in tallies)}")
    print(f"missing, not delivered by shutdown (behind): {sum(t.behind for t in tallies)}")
    print(f"EventsLost reports: {sum(len(c.gaps) for c in run.consumers)}")
    print(f"crashed consumers: {len(crashed)}")
    print(
        f"requests per consumer per minute: mean {statistics.fmean(rates):.1f}, "
        f"highest consumer mean {max(rates):.1f}, highest single minute {max(peak_rates)}"
    )
    print(f"minutes over the busy-loop ceiling: {len(busy)} {busy[:10]}")
    print(f"drain after the stream ended: {run.drain_seconds:.1f} s")
    print(f"shutdown: {run.shutdown_seconds:.2f} s, consumers that did not stop: {run.stuck}")
    print(f"open file descriptors: {run.fds_before} before, {run.fds_after} after")
    print(f"wall time: {run.wall_seconds / 60:.1f} min")

    print("\n== outcomes the consumers saw ==")
    for outcome, count in sorted(outcomes.items()):
        print(f"{count:10,d}  {outcome}")
    print("\n== the fake server ==")
    for key, value in run.server.items():
        print(f"{key}: {value}")
    print(f"lptrio log records by level: {dict(LOG_COUNTER.counts)}")

    print("\n== memory, sampled every minute ==")
    print("minute  rss_kib  heap_blocks  traced_kib  fds  server_rss_kib")
    for s in [*run.samples, run.after]:
        print(
            f"{s.minute:6.1f}  {s.rss_kib:7d}  {s.heap_blocks:11d}  "
            f"{s.traced_kib if s.traced_kib is not None else '-':>10}  {s.fds:3d}  "
            f"{s.server_rss_kib if s.server_rss_kib is not None else '-'}"
        )
    # The trend leaves out the sample before the consumers started and the one after they
    # stopped (the last row above).
    steady = run.samples[1:]
    for name in ("rss_kib", "heap_blocks", "traced_kib", "fds", "server_rss_kib"):
        values = [getattr(s, name) for s in steady if getattr(s, name) is not None]
        if not values:
            continue
        print(
            f"{name}: first {values[0]}, last {values[-1]}, peak {max(values)}, "
            f"slope {slope_per_minute(steady, name):+.1f} per minute"
        )
    print(f"peak RSS (VmHWM): {proc_status_kib('self', 'VmHWM')} KiB")

    return not (
        sum(t.lost for t in tallies)
        or sum(t.duplicates for t in tallies)
        or sum(t.out_of_order for t in tallies)
        or sum(t.altered for t in tallies)
        or sum(t.unknown for t in tallies)
        or crashed
        or run.stuck
        or "error" in run.server
    )


LOG_COUNTER = LogCounter()


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="real minutes of updates (default: 30)"
    )
    parser.add_argument(
        "--consumers", type=int, default=100, help="LongPolls of the account (default: 100)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the updates and the faults (default: 1)"
    )
    parser.add_argument(
        "--wait",
        type=int,
        default=5,
        help="the poll's wait in seconds; the client times out a poll after wait + 10 s "
        "(default: 5)",
    )
    parser.add_argument(
        "--update-interval",
        type=float,
        default=2.0,
        help="mean seconds between batches of updates (default: 2)",
    )
    parser.add_argument(
        "--faults-per-minute",
        type=float,
        default=12.0,
        help="faults scheduled per minute, each hitting one request (default: 12)",
    )
    parser.add_argument(
        "--key-ttl",
        type=float,
        default=600.0,
        help="seconds until the server rejects a key with failed 2 (default: 600)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=300.0,
        help="seconds the consumers get to catch up after the stream ends (default: 300)",
    )
    parser.add_argument("--tls", action="store_true", help="serve HTTPS instead of HTTP")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also sample the Python heap in bytes with tracemalloc, which slows allocation",
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.consumers < 1 or args.update_interval <= 0:
        parser.error("--minutes, --consumers and --update-interval must be positive")
    if not 0 <= args.wait <= 90:
        parser.error(f"--wait {args.wait} is out of range; it must be 0 to 90 seconds")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    lptrio_log = logging.getLogger("lptrio")
    lptrio_log.addHandler(LOG_COUNTER)
    lptrio_log.propagate = False
    lptrio_log.setLevel(logging.INFO)

    seconds = args.minutes * 60.0
    # Longer than both client timeouts, so every stall ends in a client-side timeout.
    stall_seconds = max(API_TIMEOUT, args.wait + POLL_TIMEOUT_MARGIN) + 5.0
    stream = build_stream(args.seed, seconds, args.update_interval)
    schedule = build_fault_schedule(args.seed, seconds, args.faults_per_minute, stall_seconds)
    if args.tracemalloc:
        tracemalloc.start()

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as folder:
        fixture = Path(folder) / "soak_session.jsonl"
        write_stream_fixture(fixture, stream, args.wait)
        options = ServerOptions(
            fixture=str(fixture),
            faults=schedule.to_json(),
            key_ttl=args.key_ttl,
            ca_path=str(Path(folder) / "ca.pem") if args.tls else None,
        )
        print(
            f"soak: {args.consumers} consumers, {args.minutes:g} min, seed {args.seed}, "
            f"{len(stream.raws)} updates, {len(schedule)} faults, stalls {stall_seconds:g} s; "
            f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, pid {os.getpid()}",
            file=sys.stderr,
            flush=True,
        )
        run = trio.run(run_soak, args, stream, options)
    return 0 if report(args, stream, schedule, run) else 1


if __name__ == "__main__":
    sys.exit(main())
