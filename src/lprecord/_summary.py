"""A summary of a fixture: polls, updates by code, ts range, failures."""

from collections import Counter
from dataclasses import dataclass, field

from ._fixture import Exchange, ExchangeKind, Fixture


@dataclass(slots=True, kw_only=True)
class Summary:
    """Counts over a recorded session."""

    exchanges: int = 0
    api_calls: int = 0
    polls: int = 0
    empty_polls: int = 0
    updates: Counter[int] = field(default_factory=Counter)
    failed: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    bad_replies: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    duration: float = 0.0

    @property
    def total_updates(self) -> int:
        """The number of updates in all poll replies."""
        return sum(self.updates.values())

    def lines(self) -> list[str]:
        """Return the summary as lines of text for a terminal."""
        codes = (
            ", ".join(f"{code}: {count}" for code, count in sorted(self.updates.items())) or "none"
        )
        failed = ", ".join(
            f"failed {code}: {count}" for code, count in sorted(self.failed.items())
        )
        errors = ", ".join(
            f"{kind}: {count}" for kind, count in sorted(self.transport_errors.items())
        )
        ts_range = "none" if self.first_ts is None else f"{self.first_ts} .. {self.last_ts}"
        return [
            f"exchanges:   {self.exchanges} ({count_of(self.api_calls, 'API call')}, "
            f"{count_of(self.polls, 'poll')}, {self.empty_polls} of them empty)",
            f"duration:    {self.duration:.1f} s",
            f"updates:     {self.total_updates} (by code: {codes})",
            f"ts range:    {ts_range}",
            f"failures:    {failed or 'none'}",
            f"transport:   {errors or 'no errors'}; unreadable replies: {self.bad_replies}",
        ]


def summarize(fixture: Fixture) -> Summary:
    """Count what a fixture holds."""
    summary = Summary(exchanges=len(fixture.exchanges))
    for exchange in fixture.exchanges:
        summary.duration = max(summary.duration, exchange.t + exchange.elapsed)
        if exchange.error_kind is not None:
            summary.transport_errors[exchange.error_kind] += 1
            continue
        reply = exchange.json_body()
        if exchange.kind is not ExchangeKind.POLL:
            summary.api_calls += 1
            result = reply.get("response") if isinstance(reply, dict) else None
            if isinstance(result, dict):
                _see_ts(summary, result.get("ts"))
            continue

        summary.polls += 1
        if not isinstance(reply, dict) or exchange.status != 200:
            summary.bad_replies += 1
        elif isinstance(reply.get("failed"), int):
            summary.failed[reply["failed"]] += 1
            _see_ts(summary, reply.get("ts"))
        elif isinstance(reply.get("updates"), list):
            _count_updates(summary, reply["updates"])
            _see_ts(summary, reply.get("ts"))
        else:
            summary.bad_replies += 1
    return summary


def _count_updates(summary: Summary, updates: list[object]) -> None:
    if not updates:
        summary.empty_polls += 1
    for update in updates:
        code = update[0] if isinstance(update, list) and update and type(update[0]) is int else -1
        summary.updates[code] += 1


def _see_ts(summary: Summary, value: object) -> None:
    if type(value) is str and value.isdigit():
        value = int(value)
    if type(value) is not int:
        return
    summary.first_ts = value if summary.first_ts is None else min(summary.first_ts, value)
    summary.last_ts = value if summary.last_ts is None else max(summary.last_ts, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The result of one exchange: the updates a poll brought, or a failure."""

    #: The number of update arrays in a poll reply; 0 for other exchanges.
    updates: int = 0
    #: What went wrong, such as "failed 2", "HTTP 502", "timeout", "API error 5" or
    #: "unreadable reply", or None for a success.
    failure: str | None = None


def exchange_outcome(exchange: Exchange) -> Outcome:
    """Tell whether an exchange failed, and how many updates a poll brought."""
    if exchange.error_kind is not None:
        return Outcome(failure=exchange.error_kind)
    if exchange.status != 200:
        return Outcome(failure=f"HTTP {exchange.status}")

    reply = exchange.json_body()
    if exchange.kind is not ExchangeKind.POLL:
        error = reply.get("error") if isinstance(reply, dict) else None
        if isinstance(error, dict):
            return Outcome(failure=f"API error {error.get('error_code', '(no code)')}")
        return Outcome()

    if not isinstance(reply, dict):
        return Outcome(failure="unreadable reply")
    if type(reply.get("failed")) is int:
        return Outcome(failure=f"failed {reply['failed']}")
    if isinstance(reply.get("updates"), list):
        return Outcome(updates=len(reply["updates"]))
    return Outcome(failure="unreadable reply")


def count_of(number: int, noun: str) -> str:
    """Return "1 poll" or "2 polls": the number with the noun in its plural when needed."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
