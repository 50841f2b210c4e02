"""Benchmark "poll body bytes to typed updates" for lpcore, vk_api and a hand-written parser.

Run by hand, not by the test suite::

    uv run --group bench python bench/bench_parse.py

The corpus is built from the update arrays of fixtures/chat_session.jsonl:
they are repeated and shuffled with a fixed seed into poll bodies of 25
updates each, serialized compactly in UTF-8 as a long poll server sends them.
Every pipeline parses the same bodies, and the script prints nanoseconds per
update (the median of several rounds) and the ratios between pipelines.
"""

import argparse
import functools
import gc
import json
import os
import platform
import random
import statistics
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import vk_api.longpoll

import lpcore
from lprecord import Timeline, read_fixture

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "chat_session.jsonl"
UPDATES_PER_BODY = 25
SEED = 20240601

Decoder = Callable[[bytes], Any]
Pipeline = Callable[[list[bytes]], int]


def find_orjson() -> Decoder | None:
    """Return orjson.loads when orjson is installed (it is in the bench group), else None."""
    try:
        import orjson
    except ImportError:
        return None
    loads: Decoder = orjson.loads
    return loads


# -- corpus -------------------------------------------------------------------


def build_corpus(total_updates: int) -> list[bytes]:
    """Return poll bodies that contain `total_updates` updates drawn from the fixture."""
    recorded = [update.raw for update in Timeline.from_fixture(read_fixture(FIXTURE)).updates]
    rng = random.Random(SEED)
    pool: list[Any] = []
    while len(pool) < total_updates:
        batch = list(recorded)
        rng.shuffle(batch)
        pool.extend(batch)
    pool = pool[:total_updates]

    bodies = []
    ts, pts = 1_800_000_000, 500_000
    for start in range(0, len(pool), UPDATES_PER_BODY):
        updates = pool[start : start + UPDATES_PER_BODY]
        ts += len(updates)
        pts += len(updates)
        reply = {"ts": ts, "pts": pts, "updates": updates}
        bodies.append(json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode())
    return bodies


# -- a hand-written parser: one frozen slotted dataclass per code -------------
#
# Fields are taken by position with no type or range check and no
# conversion (flags stay ints, negated user ids stay negative). Shortened
# arrays leave the trailing fields None. It shows what building typed objects
# costs by itself, on the same decoder, when nothing is checked.


@dataclass(frozen=True, slots=True)
class HandUpdate:
    raw: list[Any]


@dataclass(frozen=True, slots=True)
class HandMessage(HandUpdate):
    message_id: int
    flags: int
    peer_id: int | None = None
    timestamp: int | None = None
    text: str | None = None
    additional: dict[str, Any] | None = None
    attachments: dict[str, Any] | None = None
    random_id: int | None = None
    conversation_message_id: int | None = None
    update_time: int | None = None


@dataclass(frozen=True, slots=True)
class HandPair(HandUpdate):
    first: int
    second: int | None = None


@dataclass(frozen=True, slots=True)
class HandTriple(HandUpdate):
    first: Any
    second: Any = None
    third: Any = None


@dataclass(frozen=True, slots=True)
class HandActivity(HandUpdate):
    peer_id: int
    user_ids: list[int]
    total_count: int | None = None
    timestamp: int | None = None


# One class per event code, as a typed parser gives each code its own type.
HAND_SHAPES: dict[type[HandUpdate], tuple[int, ...]] = {
    HandMessage: (1, 2, 3, 4, 5),
    HandPair: (6, 7, 10, 11, 12, 13, 14, 20, 21, 51, 61, 62, 70, 80),
    HandTriple: (8, 9, 52, 114),
    HandActivity: (63, 64, 65, 66, 67, 68),
}
HAND_TYPES: dict[int, type[HandUpdate]] = {
    code: type(f"Hand{code}", (shape,), {"__slots__": ()})
    for shape, codes in HAND_SHAPES.items()
    for code in codes
}
HAND_FIELDS = {code: len(cls.__dataclass_fields__) for code, cls in HAND_TYPES.items()}


def hand_parse(raw: list[Any]) -> HandUpdate:
    """Build the update of `raw`'s code from its elements by position."""
    cls = HAND_TYPES.get(raw[0])
    if cls is None:
        return HandUpdate(raw)
    return cls(raw, *raw[1 : HAND_FIELDS[raw[0]]])


# -- pipelines ----------------------------------------------------------------


def lpcore_with(loads: Decoder) -> Pipeline:
    """Run lpcore as `Session(loads=loads)` does: parse_poll_body, then parse_update.

    parse_poll_body checks the envelope (an object with `ts` and an
    `updates` array, counters that may come as strings), as a session must.
    """
    parse_update = lpcore.parse_update
    parse_poll_body = lpcore.parse_poll_body

    def run(bodies: list[bytes]) -> int:
        count = 0
        for body in bodies:
            result = parse_poll_body(body, loads=loads)
            assert isinstance(result, lpcore.PollResult)
            count += len([parse_update(raw) for raw in result.updates])
        return count

    return run


def vk_api_on(loads: Decoder) -> Pipeline:
    """Decode with `loads`, then build a vk_api.longpoll.Event from each element.

    vk_api 11.10.1 raises TypeError for a message event shortened to
    ``[code, message_id, flags]`` (it compares the missing peer_id with 0),
    so each failure is caught and counted, as a consumer loop would have to.
    """
    event = vk_api.longpoll.Event

    def run(bodies: list[bytes]) -> int:
        count = failures = 0
        for body in bodies:
            for raw in loads(body)["updates"]:
                try:
                    event(raw)
                except (TypeError, AttributeError, ValueError, KeyError):
                    failures += 1
                count += 1
        return count

    return run


def hand_on(loads: Decoder) -> Pipeline:
    """Decode with `loads`, then run the hand-written parser on each element."""

    def run(bodies: list[bytes]) -> int:
        count = 0
        for body in bodies:
            count += len([hand_parse(raw) for raw in loads(body)["updates"]])
        return count

    return run


def decode_only(loads: Decoder) -> Pipeline:
    """Decode with `loads` and only count the updates: the floor under every pipeline."""

    def run(bodies: list[bytes]) -> int:
        return sum(len(loads(body)["updates"]) for body in bodies)

    return run


# -- measurement --------------------------------------------------------------


def vk_api_failures(bodies: list[bytes]) -> int:
    """Count the updates in `bodies` that vk_api's Event constructor raises on."""
    failures = 0
    for body in bodies:
        for raw in json.loads(body)["updates"]:
            try:
                vk_api.longpoll.Event(raw)
            except (TypeError, AttributeError, ValueError, KeyError):
                failures += 1
    return failures


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Nanoseconds per update of one pipeline: the median and the best of its rounds."""

    median: float
    best: float


def measure(
    pipelines: dict[str, Pipeline], bodies: list[bytes], *, rounds: int, loops: int
) -> dict[str, Timing]:
    """Time each pipeline over `rounds` interleaved rounds.

    Each round times every pipeline once, `loops` passes over all bodies,
    with the garbage collector off, as `timeit` does. Interleaving spreads
    a change in machine load over all pipelines alike.
    """
    expected = decode_only(json.loads)(bodies)
    for name, pipeline in pipelines.items():
        parsed = pipeline(bodies)
        if parsed != expected:
            raise RuntimeError(f"{name} parsed {parsed} updates, expected {expected}")

    samples: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, pipeline in pipelines.items():
            seconds = timeit.timeit(functools.partial(pipeline, bodies), number=loops)
            samples[name].append(seconds * 1e9 / (loops * expected))
    return {
        name: Timing(median=statistics.median(values), best=min(values))
        for name, values in samples.items()
    }


def machine_notes(orjson_loads: Decoder | None) -> list[str]:
    """Return the Python version, processor and package versions behind the figures."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages = ["vk-longpoll-kit", "vk_api"] + (["orjson"] if orjson_loads is not None else [])
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in packages)
    return [
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        f"CPU: {cpu}, {os.cpu_count()} logical processors",
        f"packages: {versions}",
    ]


def print_ratios(results: dict[str, Timing], *, vk_api_name: str, hand_name: str) -> None:
    """Print how each lpcore pipeline compares with vk_api and the hand-written parser."""
    for name, timing in results.items():
        if not name.startswith("lpcore"):
            continue
        vk_api_ratio = results[vk_api_name].median / timing.median
        hand_ratio = timing.median / results[hand_name].median
        print(f"{name} (from medians):")
        met = "met" if vk_api_ratio >= 5 else "NOT met"
        print(f"  {vk_api_ratio:5.2f}x as fast as vk_api (target: at least 5x, {met})")
        met = "met" if hand_ratio <= 1.5 else "NOT met"
        print(f"  {hand_ratio:5.2f}x the time of hand-written (target: at most 1.5x, {met})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=10_000, help="updates in the corpus")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per pipeline")
    parser.add_argument("--loops", type=int, default=2, help="passes over the corpus per round")
    args = parser.parse_args()

    orjson_loads = find_orjson()
    loads = orjson_loads or json.loads
    decoder = "json" if orjson_loads is None else "orjson"
    vk_api_name = f"vk_api: {decoder} + Event"
    hand_name = f"hand-written: {decoder} + dataclass"
    pipelines: dict[str, Pipeline] = {}
    pipelines["lpcore: parse_poll_body (json) + parse_update"] = lpcore_with(json.loads)
    if orjson_loads is not None:
        pipelines["lpcore: parse_poll_body (orjson) + parse_update"] = lpcore_with(orjson_loads)
    pipelines[vk_api_name] = vk_api_on(loads)
    pipelines[hand_name] = hand_on(loads)
    pipelines[f"{decoder}: decode only"] = decode_only(loads)
    if orjson_loads is not None:
        pipelines["json: decode only"] = decode_only(json.loads)

    bodies = build_corpus(args.updates)
    gc.collect()
    results = measure(pipelines, bodies, rounds=args.rounds, loops=args.loops)

    size = sum(map(len, bodies))
    print(f"corpus: {len(bodies)} bodies, {args.updates} updates, {size} bytes")
    print(f"decoder for vk_api and hand-written: {decoder}")
    failures = vk_api_failures(bodies)
    print(f"vk_api's Event raised on {failures} of {args.updates} updates (caught and counted)")
    print(f"ns per update over {args.rounds} rounds of {args.loops} passes: median, best")
    for name, timing in results.items():
        print(f"  {name:<50} {timing.median:8.0f} {timing.best:8.0f}")
    print_ratios(results, vk_api_name=vk_api_name, hand_name=hand_name)
    for note in machine_notes(orjson_loads):
        print(note)


if __name__ == "__main__":
    main()
