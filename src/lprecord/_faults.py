"""Faults a fake long poll server injects on demand: what goes wrong, on which request, when.

This module contains data and decisions only, with no I/O and no clock. A `Fault` describes
what goes wrong, and a `ScheduledFault` names the request that gets it. A `FaultSchedule`
contains several and loads from a scenario file. A `FaultInjector` counts the requests a
server receives and picks the fault, if any, that each one gets. `FakeServer` performs the
faults.

Scenario files are JSON::

    {"faults": [
        {"at_step": 3, "on": "poll", "fault": "failed", "code": 2},
        {"at_time": 40, "on": "poll", "fault": "reset_after_headers"},
        {"at_step": 1, "on": "getLongPollServer", "fault": "api_error", "code": 14}
    ]}

Each fault names its trigger (`at_step` or `at_time`), the request kind it targets (`on`,
default "poll"), its `fault` kind and that kind's fields, as listed in `FAULT_FIELDS`.
An optional top-level "description" string is ignored.
"""

import dataclasses
import enum
import inspect
import json
import math
import os
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

#: Stall length when none is given: longer than any lptrio timeout, which is at most
#: 100 s (a poll's `wait` of at most 90 s plus a 10 s margin).
DEFAULT_STALL_SECONDS = 120.0
DEFAULT_CHUNK_SIZE = 16
DEFAULT_CHUNK_DELAY = 0.1
DEFAULT_HTTP_STATUS = 502
#: The captcha id the fake sends with API error 14 when the fault names none.
DEFAULT_CAPTCHA_SID = "100000000001"

#: Messages VK sends with common API error codes.
API_ERROR_MESSAGES: Mapping[int, str] = {
    1: "Unknown error occurred",
    5: "User authorization failed: invalid access_token (4).",
    6: "Too many requests per second",
    7: "Permission to perform this action is denied",
    8: "Invalid request",
    9: "Flood control",
    10: "Internal server error",
    14: "Captcha needed",
    15: "Access denied",
    17: "Validation required",
    18: "User was deleted or banned",
    29: "Rate limit reached",
    36: "Method execution was interrupted due to timeout",
    100: "One of the parameters specified was missing or invalid",
    907: "Value of ts or pts is too old",
    908: "Value of ts or pts is too new",
    990: "Drop device cache",
}


class FaultKind(enum.StrEnum):
    """Kind of failure, as written in a scenario file's "fault" field."""

    #: A poll reply ``{"failed": code}``, with "ts" for 1 and the version range for 4.
    FAILED = "failed"
    #: An API reply ``{"error": {...}}``; code 14 carries captcha_sid and captcha_img.
    API_ERROR = "api_error"
    #: An HTTP 5xx reply with an HTML page, as a proxy in front of VK sends.
    HTTP_ERROR = "http_error"
    #: HTTP 200 with an empty body.
    EMPTY = "empty"
    #: The real reply's headers and the start of its body, then the connection closes.
    TRUNCATED = "truncated"
    #: The connection is reset before any of the reply is sent.
    RESET_BEFORE_HEADERS = "reset_before_headers"
    #: The real reply's headers, then a reset before any of the body.
    RESET_AFTER_HEADERS = "reset_after_headers"
    #: Nothing is sent for `seconds`, and then the request is served as usual.
    STALL = "stall"
    #: The real reply, its body sent `chunk_size` bytes at a time, `delay` seconds apart.
    DRIBBLE = "dribble"


class Endpoint(enum.StrEnum):
    """The kind of request a fault targets, as written in a scenario file's "on" field."""

    #: A long poll request (``act=a_check``).
    POLL = "poll"
    #: A messages.getLongPollServer call.
    SERVER = "getLongPollServer"
    #: A messages.getLongPollHistory call.
    HISTORY = "getLongPollHistory"

    @property
    def api_method(self) -> str | None:
        """The VK API method name, or None for a poll."""
        return None if self is Endpoint.POLL else f"messages.{self.value}"


#: The fields each fault kind takes, besides `kind`.
FAULT_FIELDS: Mapping[FaultKind, tuple[str, ...]] = {
    FaultKind.FAILED: ("code", "error", "min_version", "max_version"),
    FaultKind.API_ERROR: ("code", "message", "captcha_sid", "captcha_img"),
    FaultKind.HTTP_ERROR: ("status", "body"),
    FaultKind.EMPTY: (),
    FaultKind.TRUNCATED: ("keep",),
    FaultKind.RESET_BEFORE_HEADERS: (),
    FaultKind.RESET_AFTER_HEADERS: (),
    FaultKind.STALL: ("seconds",),
    FaultKind.DRIBBLE: ("chunk_size", "delay"),
}

#: The endpoints each fault kind applies to: `failed` exists only in poll replies, and API
#: errors only in API replies.
FAULT_ENDPOINTS: Mapping[FaultKind, frozenset[Endpoint]] = {
    kind: frozenset(Endpoint) for kind in FaultKind
} | {
    FaultKind.FAILED: frozenset({Endpoint.POLL}),
    FaultKind.API_ERROR: frozenset({Endpoint.SERVER, Endpoint.HISTORY}),
}

#: Kinds that replace the reply with another one, sent whole.
REPLACING_KINDS = frozenset(
    {FaultKind.FAILED, FaultKind.API_ERROR, FaultKind.HTTP_ERROR, FaultKind.EMPTY}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One thing that goes wrong with one reply.

    Build it with the class methods (`Fault.failed(2)`, `Fault.stall(120)`, ...), which fill
    in the defaults. Only the fields of its kind (`FAULT_FIELDS`) may be set.
    """

    kind: FaultKind
    #: The `failed` code, or the API error code.
    code: int | None = None
    #: The "error" text of a failed 2 reply (VK sends one in long poll version 19).
    error: str | None = None
    #: The version range of a failed 4 reply. None takes 0 and the server's maximum.
    min_version: int | None = None
    max_version: int | None = None
    #: The API error's error_msg.
    message: str | None = None
    #: The captcha fields of API error 14. None for captcha_img takes a URL on the fake
    #: server itself, so a client that fetches it contacts no other host.
    captcha_sid: str | None = None
    captcha_img: str | None = None
    #: The HTTP status of an http_error fault, 500-599.
    status: int | None = None
    #: The HTML page of an http_error fault. None takes an nginx-style error page.
    body: str | None = None
    #: Body bytes a truncated reply keeps. None keeps half, and a value that is not
    #: shorter than the body keeps all but its last byte.
    keep: int | None = None
    #: How long a stall lasts, in seconds.
    seconds: float | None = None
    #: Bytes per piece of a dribbled body.
    chunk_size: int | None = None
    #: Seconds between two pieces of a dribbled body.
    delay: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FaultKind):
            raise TypeError(f"kind must be a FaultKind, got {self.kind!r}")
        allowed = FAULT_FIELDS[self.kind]
        for name in _PARAMETER_NAMES:
            if name not in allowed and getattr(self, name) is not None:
                raise ValueError(f"{name} does not apply to a {self.kind} fault ({_takes(self)})")
        _CHECKS[self.kind](self)

    # -- constructors -----------------------------------------------------------------------

    @classmethod
    def failed(
        cls,
        code: int,
        *,
        error: str | None = None,
        min_version: int | None = None,
        max_version: int | None = None,
    ) -> Self:
        """Build a ``{"failed": code}`` poll reply; 1 carries the server's newest ts."""
        return cls(
            kind=FaultKind.FAILED,
            code=code,
            error=error,
            min_version=min_version,
            max_version=max_version,
        )

    @classmethod
    def api_error(
        cls,
        code: int,
        message: str | None = None,
        *,
        captcha_sid: str | None = None,
        captcha_img: str | None = None,
    ) -> Self:
        """Build an API error reply; `message` defaults to VK's text for common codes."""
        # A code that is not an integer is left for __post_init__ to reject.
        if message is None and type(code) is int:
            message = API_ERROR_MESSAGES.get(code)
            if message is None:
                raise ValueError(f"API error {code} has no standard message; pass message")
        if code == 14 and captcha_sid is None:
            captcha_sid = DEFAULT_CAPTCHA_SID
        return cls(
            kind=FaultKind.API_ERROR,
            code=code,
            message=message,
            captcha_sid=captcha_sid,
            captcha_img=captcha_img,
        )

    @classmethod
    def http_error(cls, status: int = DEFAULT_HTTP_STATUS, *, body: str | None = None) -> Self:
        """Build an HTTP 5xx reply with an HTML page."""
        return cls(kind=FaultKind.HTTP_ERROR, status=status, body=body)

    @classmethod
    def empty(cls) -> Self:
        """Build an HTTP 200 reply with an empty body."""
        return cls(kind=FaultKind.EMPTY)

    @classmethod
    def truncated(cls, keep: int | None = None) -> Self:
        """Send the real reply's first `keep` body bytes (default: half), then close."""
        return cls(kind=FaultKind.TRUNCATED, keep=keep)

    @classmethod
    def reset_before_headers(cls) -> Self:
        """Reset the connection without sending anything."""
        return cls(kind=FaultKind.RESET_BEFORE_HEADERS)

    @classmethod
    def reset_after_headers(cls) -> Self:
        """Send the real reply's headers, then reset the connection."""
        return cls(kind=FaultKind.RESET_AFTER_HEADERS)

    @classmethod
    def stall(cls, seconds: float = DEFAULT_STALL_SECONDS) -> Self:
        """Send nothing for `seconds`, then serve the request as usual."""
        return cls(kind=FaultKind.STALL, seconds=seconds)

    @classmethod
    def dribble(
        cls, chunk_size: int = DEFAULT_CHUNK_SIZE, delay: float = DEFAULT_CHUNK_DELAY
    ) -> Self:
        """Send the real reply's body `chunk_size` bytes at a time, `delay` seconds apart."""
        return cls(kind=FaultKind.DRIBBLE, chunk_size=chunk_size, delay=delay)

    # -- decisions --------------------------------------------------------------------------

    @property
    def replaces_reply(self) -> bool:
        """Whether the fault sends a reply of its own instead of the real one."""
        return self.kind in REPLACING_KINDS

    def truncate_at(self, body_length: int) -> int:
        """Return how many body bytes a truncated reply keeps of a `body_length`-byte body."""
        keep = body_length // 2 if self.keep is None else self.keep
        return max(0, min(keep, body_length - 1))

    def to_json(self) -> dict[str, Any]:
        """Return the fault as a scenario file writes it, without its trigger."""
        fields = {name: getattr(self, name) for name in FAULT_FIELDS[self.kind]}
        return {"fault": str(self.kind)} | {k: v for k, v in fields.items() if v is not None}


_PARAMETER_NAMES = tuple(f.name for f in dataclasses.fields(Fault) if f.name != "kind")


def _takes(fault: Fault) -> str:
    names = FAULT_FIELDS[fault.kind]
    return f"it takes {', '.join(names)}" if names else "it takes no fields"


def _check_failed(fault: Fault) -> None:
    code = _require_int(fault, "code")
    if code < 1:
        raise ValueError(f"failed code {code} is invalid; VK's codes are 1-4, counting from 1")
    if fault.error is not None and code != 2:
        raise ValueError(f"error text belongs to failed 2 only, not failed {code}")
    has_versions = fault.min_version is not None or fault.max_version is not None
    if has_versions and code != 4:
        raise ValueError(f"min_version and max_version belong to failed 4 only, not {code}")
    for name in ("min_version", "max_version"):
        if getattr(fault, name) is not None and _require_int(fault, name) < 0:
            raise ValueError(f"{name}={getattr(fault, name)} must not be negative")


def _check_api_error(fault: Fault) -> None:
    code = _require_int(fault, "code")
    if code < 1:
        raise ValueError(f"API error code {code} is invalid; it must be positive")
    if not isinstance(fault.message, str) or not fault.message:
        raise ValueError(f"API error {code} needs a message")
    has_captcha = fault.captcha_sid is not None or fault.captcha_img is not None
    if has_captcha and code != 14:
        raise ValueError(f"captcha_sid and captcha_img belong to API error 14 only, not {code}")
    if code == 14 and fault.captcha_sid is None:
        raise ValueError("API error 14 needs a captcha_sid")


def _check_http_error(fault: Fault) -> None:
    status = _require_int(fault, "status")
    if not 500 <= status <= 599:
        raise ValueError(f"status {status} is not an HTTP 5xx status (500-599)")


def _check_truncated(fault: Fault) -> None:
    if fault.keep is not None and _require_int(fault, "keep") < 0:
        raise ValueError(f"keep={fault.keep} must not be negative")


def _check_stall(fault: Fault) -> None:
    _require_seconds(fault, "seconds")


def _check_dribble(fault: Fault) -> None:
    if _require_int(fault, "chunk_size") < 1:
        raise ValueError(f"chunk_size={fault.chunk_size} must be at least 1 byte")
    _require_seconds(fault, "delay")


def _check_nothing(fault: Fault) -> None:
    pass


_CHECKS = {
    FaultKind.FAILED: _check_failed,
    FaultKind.API_ERROR: _check_api_error,
    FaultKind.HTTP_ERROR: _check_http_error,
    FaultKind.EMPTY: _check_nothing,
    FaultKind.TRUNCATED: _check_truncated,
    FaultKind.RESET_BEFORE_HEADERS: _check_nothing,
    FaultKind.RESET_AFTER_HEADERS: _check_nothing,
    FaultKind.STALL: _check_stall,
    FaultKind.DRIBBLE: _check_dribble,
}


def _require_int(fault: Fault, name: str) -> int:
    value = getattr(fault, name)
    if value is None:
        raise ValueError(f"a {fault.kind} fault needs {name}")
    if type(value) is not int:
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return value


def _require_seconds(fault: Fault, name: str) -> float:
    value = getattr(fault, name)
    if value is None:
        raise ValueError(f"a {fault.kind} fault needs {name}")
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledFault:
    """A fault and the request that gets it.

    The fault fires once, on the first request to `on` whose number (counting from 1) is
    at least `at_step`, or which arrives `at_time` seconds or more after the server started
    serving. A request gets at most one fault, the first one due in schedule order, so a
    fault whose request went to another waits for the next one.
    """

    fault: Fault
    on: Endpoint = Endpoint.POLL
    at_step: int | None = None
    at_time: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.on, Endpoint):
            raise TypeError(f"on must be an Endpoint, got {self.on!r}")
        if (self.at_step is None) == (self.at_time is None):
            raise ValueError("set exactly one of at_step and at_time")
        if self.at_step is not None and (type(self.at_step) is not int or self.at_step < 1):
            raise ValueError(f"at_step must be an integer from 1, got {self.at_step!r}")
        if self.at_time is not None and (
            type(self.at_time) not in (int, float)
            or not math.isfinite(self.at_time)
            or self.at_time < 0
        ):
            raise ValueError(f"at_time must be a non-negative number, got {self.at_time!r}")
        if self.on not in FAULT_ENDPOINTS[self.fault.kind]:
            allowed = ", ".join(sorted(FAULT_ENDPOINTS[self.fault.kind]))
            raise ValueError(
                f"a fault of kind {self.fault.kind} cannot target {self.on} requests; "
                f"it targets {allowed}"
            )

    def is_due(self, step: int, elapsed: float) -> bool:
        """Return whether request number `step`, arriving `elapsed` s into serving, gets it."""
        if self.at_step is not None:
            return step >= self.at_step
        assert self.at_time is not None
        return elapsed >= self.at_time

    def to_json(self) -> dict[str, Any]:
        """Return the scheduled fault as a scenario file writes it."""
        trigger: dict[str, Any] = (
            {"at_step": self.at_step} if self.at_step is not None else {"at_time": self.at_time}
        )
        return trigger | {"on": str(self.on)} | self.fault.to_json()


class ScenarioError(ValueError):
    """A scenario file or object that cannot be loaded, with where and why."""

    def __init__(self, source: str, index: int | None, reason: str) -> None:
        self.source = source
        self.index = index
        self.reason = reason
        where = source if index is None else f"{source}: faults[{index}]"
        super().__init__(f"{where}: {reason}")


#: The kinds `FaultSchedule.random` picks from by default. A well-behaved client recovers
#: from each with the codes it picks: failed 4 and fatal API errors, which stop a client,
#: are never picked.
RECOVERABLE_KINDS = tuple(FaultKind)
_RANDOM_FAILED_CODES = (1, 2, 3)
#: Transient API errors a client retries at once (9 and 29 make lptrio wait a minute).
_RANDOM_API_CODES = (1, 6, 10)
_RANDOM_HTTP_STATUSES = (500, 502, 503, 504)
_RANDOM_ENDPOINT_WEIGHTS = {Endpoint.POLL: 4, Endpoint.SERVER: 1, Endpoint.HISTORY: 1}


@dataclass(frozen=True, slots=True)
class FaultSchedule:
    """Faults to inject into one fake server session, each fired once."""

    faults: tuple[ScheduledFault, ...] = ()

    def __iter__(self) -> Iterator[ScheduledFault]:
        return iter(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read a scenario file; raise `ScenarioError` naming the file, fault and reason."""
        source = os.fspath(path)
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ScenarioError(
                source,
                None,
                f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}",
            ) from None
        return cls.from_json(data, source=source)

    @classmethod
    def from_json(cls, data: Any, *, source: str = "<scenario>") -> Self:
        """Build a schedule from a parsed scenario; `source` names it in errors."""
        if not isinstance(data, dict):
            raise ScenarioError(source, None, f"expected a JSON object, got {_json_type(data)}")
        unknown = sorted(set(data) - {"faults", "description"})
        if unknown:
            raise ScenarioError(
                source, None, f"unknown key {unknown[0]!r}; a scenario has faults and description"
            )
        entries = data.get("faults")
        if not isinstance(entries, list):
            raise ScenarioError(
                source, None, f"'faults' must be a list, got {_json_type(entries)}"
            )
        return cls(tuple(_load_entry(entry, source, index) for index, entry in enumerate(entries)))

    def to_json(self) -> dict[str, Any]:
        """Return the schedule as a scenario file's object, which `from_json` reads back."""
        return {"faults": [scheduled.to_json() for scheduled in self.faults]}

    @classmethod
    def random(
        cls,
        seed: int,
        *,
        count: int = 8,
        max_step: int = 20,
        max_time: float | None = None,
        kinds: Iterable[FaultKind] = RECOVERABLE_KINDS,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
    ) -> Self:
        """Build `count` recoverable faults at random; the same arguments give the same schedule.

        Each fault fires at a step from 1 to `max_step`, or, when `max_time` is given, half of
        them at a time below `max_time` seconds. Polls are four times as likely to be targeted
        as each API method.
        """
        choices = tuple(kinds)
        if not choices:
            raise ValueError("kinds is empty; pass at least one FaultKind")
        if count < 0 or max_step < 1:
            raise ValueError(f"count={count} must be >= 0 and max_step={max_step} >= 1")
        rng = random.Random(seed)
        return cls(
            tuple(
                _random_fault(rng, choices, max_step, max_time, stall_seconds)
                for _ in range(count)
            )
        )


def _load_entry(entry: Any, source: str, index: int) -> ScheduledFault:
    if not isinstance(entry, dict):
        raise ScenarioError(source, index, f"expected a JSON object, got {_json_type(entry)}")
    if "fault" not in entry:
        raise ScenarioError(source, index, "missing 'fault', the fault kind")
    try:
        kind = FaultKind(entry["fault"])
    except ValueError:
        known = ", ".join(FaultKind)
        raise ScenarioError(
            source, index, f"unknown fault kind {entry.get('fault')!r}; expected one of: {known}"
        ) from None
    try:
        on = Endpoint(entry.get("on", "poll"))
    except ValueError:
        known = ", ".join(Endpoint)
        raise ScenarioError(
            source, index, f"unknown 'on' value {entry.get('on')!r}; expected one of: {known}"
        ) from None

    parameters = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
    unknown = sorted(set(parameters) - set(FAULT_FIELDS[kind]))
    if unknown:
        names = ", ".join(FAULT_FIELDS[kind]) or "no fields"
        raise ScenarioError(
            source, index, f"unknown field {unknown[0]!r} for fault kind {kind} (it takes {names})"
        )
    constructor = _CONSTRUCTORS[kind]
    missing = [
        name
        for name, parameter in inspect.signature(constructor).parameters.items()
        if parameter.default is inspect.Parameter.empty and name not in parameters
    ]
    if missing:
        names = ", ".join(FAULT_FIELDS[kind])
        raise ScenarioError(
            source, index, f"missing field {missing[0]!r} for fault kind {kind} (it takes {names})"
        )
    try:
        fault = constructor(**parameters)
        return ScheduledFault(
            fault=fault, on=on, at_step=entry.get("at_step"), at_time=entry.get("at_time")
        )
    except (TypeError, ValueError) as error:
        raise ScenarioError(source, index, str(error)) from None


_ENTRY_KEYS = frozenset({"fault", "on", "at_step", "at_time"})
_CONSTRUCTORS: Mapping[FaultKind, Any] = {
    FaultKind.FAILED: Fault.failed,
    FaultKind.API_ERROR: Fault.api_error,
    FaultKind.HTTP_ERROR: Fault.http_error,
    FaultKind.EMPTY: Fault.empty,
    FaultKind.TRUNCATED: Fault.truncated,
    FaultKind.RESET_BEFORE_HEADERS: Fault.reset_before_headers,
    FaultKind.RESET_AFTER_HEADERS: Fault.reset_after_headers,
    FaultKind.STALL: Fault.stall,
    FaultKind.DRIBBLE: Fault.dribble,
}


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _random_fault(
    rng: random.Random,
    kinds: tuple[FaultKind, ...],
    max_step: int,
    max_time: float | None,
    stall_seconds: float,
) -> ScheduledFault:
    kind = rng.choice(kinds)
    endpoints = [e for e in _RANDOM_ENDPOINT_WEIGHTS if e in FAULT_ENDPOINTS[kind]]
    weights = [_RANDOM_ENDPOINT_WEIGHTS[e] for e in endpoints]
    on = rng.choices(endpoints, weights)[0]

    if kind is FaultKind.FAILED:
        fault = Fault.failed(rng.choice(_RANDOM_FAILED_CODES))
    elif kind is FaultKind.API_ERROR:
        fault = Fault.api_error(rng.choice(_RANDOM_API_CODES))
    elif kind is FaultKind.HTTP_ERROR:
        fault = Fault.http_error(rng.choice(_RANDOM_HTTP_STATUSES))
    elif kind is FaultKind.STALL:
        fault = Fault.stall(stall_seconds)
    else:
        fault = _CONSTRUCTORS[kind]()

    if max_time is not None and rng.random() < 0.5:
        return ScheduledFault(fault=fault, on=on, at_time=round(rng.uniform(0, max_time), 3))
    return ScheduledFault(fault=fault, on=on, at_step=rng.randint(1, max_step))


@dataclass(frozen=True, slots=True, kw_only=True)
class FiredFault:
    """A fault that a request got: which request, and when."""

    scheduled: ScheduledFault
    #: The request's number among requests to its endpoint, counting from 1.
    step: int
    #: Seconds from the start of serving to the request's arrival.
    at: float

    @property
    def fault(self) -> Fault:
        """The fault that fired."""
        return self.scheduled.fault


@dataclass(slots=True)
class FaultInjector:
    """Counts a server's requests per endpoint and picks the fault each one gets.

    `origin` is the server time that `at_time` counts from; None takes the arrival time of
    the first request.
    """

    schedule: FaultSchedule = field(default_factory=FaultSchedule)
    origin: float | None = None
    fired: list[FiredFault] = field(default_factory=list)
    _pending: list[ScheduledFault] = field(default_factory=list)
    _counts: dict[Endpoint, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pending = list(self.schedule.faults)

    @property
    def pending(self) -> tuple[ScheduledFault, ...]:
        """The faults that have not fired yet, in schedule order."""
        return tuple(self._pending)

    def count(self, endpoint: Endpoint) -> int:
        """Return how many requests to `endpoint` have arrived."""
        return self._counts.get(endpoint, 0)

    def add(self, scheduled: ScheduledFault) -> None:
        """Schedule one more fault, after those already pending."""
        self._pending.append(scheduled)

    def add_next(self, fault: Fault, on: Endpoint) -> ScheduledFault:
        """Schedule `fault` for the next request to `on` and return its schedule entry."""
        scheduled = ScheduledFault(fault=fault, on=on, at_step=self.count(on) + 1)
        self.add(scheduled)
        return scheduled

    def take(self, endpoint: Endpoint, now: float) -> FiredFault | None:
        """Count a request to `endpoint` arriving at `now`; return the fault it gets, if any."""
        if self.origin is None:
            self.origin = now
        step = self._counts[endpoint] = self.count(endpoint) + 1
        elapsed = now - self.origin
        for index, scheduled in enumerate(self._pending):
            if scheduled.on is endpoint and scheduled.is_due(step, elapsed):
                del self._pending[index]
                fired = FiredFault(scheduled=scheduled, step=step, at=elapsed)
                self.fired.append(fired)
                return fired
        return None


def describe_fault(fault: Fault) -> str:
    """Return the fault's kind and the fields of its kind that are set, as in "failed (code=2)"."""
    fields = [
        f"{name}={getattr(fault, name)!r}"
        for name in FAULT_FIELDS[fault.kind]
        if getattr(fault, name) is not None
    ]
    return f"{fault.kind} ({', '.join(fields)})" if fields else str(fault.kind)
