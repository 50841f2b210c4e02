"""The `lprecord` command: capture, replay, show, check and scrub long poll sessions."""

import argparse
import errno
import logging
import math
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import NoReturn, TextIO

import trio

import lpcore
from lptrio import LongPoll
from lptrio._longpoll import check_api_url as lptrio_check_api_url

from ._check import check_fixture
from ._faults import FaultSchedule, ScenarioError, describe_fault
from ._fixture import (
    Exchange,
    ExchangeKind,
    Fixture,
    FixtureError,
    FixtureWriter,
    Header,
    read_fixture,
    write_fixture,
)
from ._recorder import Recorder
from ._scrub import SKIPPED_FIELD, Scrubber, scrub_fixture
from ._server import FakeServer
from ._strict import StrictMismatch
from ._summary import Outcome, count_of, exchange_outcome, summarize
from ._timeline import Timeline
from ._wire import OMITTED, gate_update

DEMO_FIXTURE = "chat_session.jsonl"
DEMO_TOKEN = "demo-token-for-the-embedded-fake-server-0000000000"


def demo_fixture_path() -> Path:
    """Locate the shipped fixture the demo replays.

    A wheel carries the fixtures inside the package (lprecord/fixtures);
    a source checkout keeps them at the repository root.
    """
    packaged = Path(__file__).parent / "fixtures" / DEMO_FIXTURE
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[2] / "fixtures" / DEMO_FIXTURE


class CommandError(Exception):
    """An error to report in one line, with exit status 2."""


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """Return an argparse type that accepts whole numbers from `low` to `high` (None: no limit)."""

    def parse(text: str) -> int:
        # int() would also take "2_3_4" and digits of other scripts.
        if not _WHOLE_NUMBER.fullmatch(text):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        value = int(text)
        if value < low or (high is not None and value > high):
            allowed = f"{low} or more" if high is None else f"{low} to {high}"
            raise argparse.ArgumentTypeError(f"{value} is out of range; use {allowed}")
        return value

    return parse


def _mode_mask(text: str) -> int:
    """Parse a `mode` bit mask made only of the bits that VK documents."""
    value = _int_in(0)(text)
    flags = (1 << bit for bit in range(value.bit_length()) if value >> bit & 1)
    unknown = [flag for flag in flags if not flag & lpcore.Mode.DEFAULT]
    if unknown:
        if len(unknown) == 1:
            named = f"flag {unknown[0]}"
        elif len(unknown) <= 4:
            named = f"flags {', '.join(map(str, unknown[:-1]))} and {unknown[-1]}"
        else:
            named = f"{len(unknown)} flags from {unknown[0]} to {unknown[-1]}"
        known = ", ".join(str(int(flag)) for flag in lpcore.Mode.DEFAULT)
        raise argparse.ArgumentTypeError(
            f"{value} sets {named}, which VK does not document; "
            f"use a sum of the flags {known}, such as {int(lpcore.Mode.DEFAULT)}"
        )
    return value


def _bind_host(text: str) -> str:
    """Check a --host value before it reaches the resolver: a host, with no port or brackets."""
    if not text:
        raise argparse.ArgumentTypeError("the host is empty; pass an address such as 127.0.0.1")
    if "[" in text or "]" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} has brackets; pass an IPv6 address without them, such as ::1"
        )
    if text.count(":") == 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} looks like host:port; pass the port with --port"
        )
    return text


def _positive_seconds(text: str) -> float:
    """Parse a finite number greater than 0 (seconds or a speed factor)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the `lprecord` command."""
    parser = argparse.ArgumentParser(
        prog="lprecord", description="Record VK User Long Poll sessions and replay them."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    capture = commands.add_parser(
        "capture",
        help="record a long poll session into a fixture file",
        description="Record a long poll session into a fixture file. With no token and no "
        "--api-url it records the embedded demo: a fake server replaying a shipped session, "
        "on loopback, in virtual time.",
    )
    capture.add_argument("-o", "--output", required=True, type=Path, help="fixture file to write")
    capture.add_argument(
        "--token", help="VK access token (default: the VK_TOKEN environment variable)"
    )
    capture.add_argument("--api-url", help=f"VK API base URL (default: {lpcore.DEFAULT_API_URL})")
    capture.add_argument("--cafile", help="PEM file of certificate authorities to trust")
    capture.add_argument(
        "--mode",
        type=_mode_mask,
        default=int(lpcore.Mode.DEFAULT),
        help="mode bit mask, a sum of 2, 8, 32, 64 and 128 (default: 234)",
    )
    capture.add_argument(
        "--wait",
        # 0 would turn every poll into an immediate reply: a busy loop.
        type=_int_in(1, lpcore.MAX_WAIT),
        default=25,
        help=f"seconds the server may hold a poll, 1-{lpcore.MAX_WAIT} (default: 25)",
    )
    capture.add_argument(
        "--updates",
        type=_int_in(1),
        metavar="N",
        help="stop at the end of the poll that brings the total to at least N updates",
    )
    capture.add_argument(
        "--duration", type=_positive_seconds, metavar="S", help="stop after S seconds"
    )
    capture.add_argument(
        "--demo", action="store_true", help="record the embedded demo even if a token is set"
    )
    capture.add_argument(
        "--force", action="store_true", help="overwrite the output file if it exists"
    )
    capture.add_argument(
        "--scrub",
        action="store_true",
        help="replace ids and message text with consistent fake values as they are recorded, "
        "as `lprecord scrub` does",
    )

    replay = commands.add_parser(
        "replay",
        help="serve a fixture as a fake long poll server",
        description="Serve a fixture as a fake VK long poll server until interrupted. "
        "Prints the API base URL to give to a client.",
    )
    replay.add_argument("fixture", type=Path, help="fixture file to replay")
    replay.add_argument(
        "--host", type=_bind_host, default="127.0.0.1", help="address to bind (default: 127.0.0.1)"
    )
    replay.add_argument(
        "--port", type=_int_in(0, 65535), default=0, help="port to bind (default: any free port)"
    )
    replay.add_argument(
        "--tls", action="store_true", help="serve HTTPS with a throwaway certificate authority"
    )
    replay.add_argument(
        "--ca-out", type=Path, metavar="PEM", help="with --tls, write the CA certificate here"
    )
    replay.add_argument(
        "--speed",
        type=_positive_seconds,
        default=1.0,
        help="time factor; 2 replays twice as fast (default: 1)",
    )
    replay.add_argument(
        "--strict",
        action="store_true",
        help="serve the recorded exchanges in their recorded order; the first request that "
        "differs gets HTTP 500 with the differences, which are printed, and the server stops "
        "with exit status 1",
    )
    replay.add_argument(
        "--faults",
        type=Path,
        metavar="SCENARIO",
        help='JSON scenario of faults to inject, such as {"faults": [{"at_step": 3, "on": '
        '"poll", "fault": "failed", "code": 2}]}; not with --strict',
    )

    show = commands.add_parser(
        "show", help="summarize a fixture", description="Print a fixture's header and a summary."
    )
    show.add_argument("fixture", type=Path, help="fixture file to summarize")

    check = commands.add_parser(
        "check",
        help="check fixtures for schema errors and values that look like secrets",
        description="Read each fixture and look for schema errors, unredacted access_token "
        "and key values, and strings shaped like VK tokens or long poll keys. Prints one line "
        "per finding and one OK line per clean file. Exits with 1 when anything is found, 2 "
        "when a file cannot be read, else 0.",
    )
    check.add_argument("fixtures", nargs="+", type=Path, metavar="FIXTURE", help="files to check")

    scrub = commands.add_parser(
        "scrub",
        help="write a copy of a fixture with fake ids and message text",
        description="Write a copy of IN to OUT in which every user, chat and community id is "
        "replaced by a consistent fake id of the same kind, and message text by filler of the "
        "same length. Bodies that are not JSON are copied unchanged and listed in the header's "
        "scrub_skipped. The mapping is random and is not saved.",
    )
    scrub.add_argument("input", type=Path, metavar="IN", help="fixture file to read")
    scrub.add_argument("output", type=Path, metavar="OUT", help="fixture file to write")
    scrub.add_argument("--force", action="store_true", help="overwrite OUT if it exists")

    for command in commands.choices.values():
        command.set_defaults(command_parser=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `lprecord` command; return its exit status."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        # Reported by the command's own parser, so that the usage line shown is its own.
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "capture":
            return run_capture(args)
        if args.command == "replay":
            return run_replay(args)
        if args.command == "check":
            return run_check(args)
        if args.command == "scrub":
            return run_scrub(args)
        return run_show(args)
    except BaseException as error:
        cause = sole_cause(error)
        if isinstance(cause, KeyboardInterrupt):
            return 130
        if isinstance(cause, BrokenPipeError):
            # The reader of standard output left early, as `lprecord show F | head` does.
            # Python would report the failed flush at exit, so the output goes nowhere.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if isinstance(cause, CommandError | FixtureError | lpcore.LongPollError | OSError):
            print(f"lprecord: error: {describe_error(cause)}", file=sys.stderr)
            return 2
        raise


def describe_error(error: BaseException) -> str:
    """Describe `error` for the user. A file error names its file the way Unix tools do."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def sole_cause(error: BaseException) -> BaseException:
    """Unwrap the exception groups trio puts around an error that is alone in them."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


# -- show ---------------------------------------------------------------------


def run_show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print a fixture's header and summary to `out` (standard output by default)."""
    out = out or sys.stdout
    fixture = read_fixture(args.fixture)
    header = fixture.header
    print(f"fixture:     {args.fixture}", file=out)
    print(f"written by:  {header.tool}; source: {header.source or '-'}", file=out)
    print(
        f"session:     version {header.lp_version}, mode {header.mode}, wait {header.wait} s, "
        f"API {header.api_version}, user {header.user_id or 'unknown'}",
        file=out,
    )
    redacted = ", ".join(header.redacted) or "nothing"
    scrubbed = "yes" if header.scrubbed else "no"
    print(f"redacted:    {redacted}; scrubbed: {scrubbed}", file=out)
    for line in summarize(fixture).lines():
        print(line, file=out)
    return 0


# -- replay -------------------------------------------------------------------


# SIGHUP does not exist on Windows.
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def run_replay(args: argparse.Namespace) -> int:
    """Serve a fixture until interrupted, or in strict mode until a request differs."""
    if args.ca_out and not args.tls:
        raise CommandError("--ca-out needs --tls: a plain HTTP server has no certificate")
    if args.strict and args.faults:
        raise CommandError(
            "--strict replays the recorded replies and takes no --faults; record a session "
            "with faults and replay that recording strictly instead"
        )
    try:
        faults = FaultSchedule.load(args.faults) if args.faults else None
    except ScenarioError as error:
        raise CommandError(str(error)) from error
    try:
        server = FakeServer(
            args.fixture,
            host=args.host,
            port=args.port,
            tls=args.tls,
            speed=args.speed,
            strict=args.strict,
            faults=faults,
        )
    except ValueError as error:
        # FixtureError is raised as it is; this is a fixture that reads
        # fine but holds no session to replay.
        raise CommandError(f"{args.fixture}: {error}") from None

    # Each injected fault is logged, so whoever runs the server can tell what a client got.
    logging.basicConfig(format="lprecord: %(message)s", stream=sys.stderr)
    logging.getLogger("lprecord").setLevel(logging.INFO)

    async def serve() -> None:
        # SIGTERM, which service managers, `timeout` and CI runners send, and SIGHUP, which
        # a closed terminal sends, stop the replay as Ctrl-C does, so that the faults that
        # never fired are still reported.
        with trio.open_signal_receiver(*_STOP_SIGNALS) as terminations:
            await serve_until(terminations)

    async def serve_until(terminations: AsyncIterator[int]) -> None:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(server.serve)
            except BaseException as error:
                cause = sole_cause(error)
                if not isinstance(cause, OSError):
                    raise
                if cause.errno == errno.EADDRINUSE:
                    raise CommandError(
                        f"cannot listen on {args.host} port {args.port}: it is already in use; "
                        "pass another --port, or --port 0 for a free one"
                    ) from None
                # The name does not resolve, or the address does not belong to this machine.
                raise CommandError(
                    f"cannot listen on --host {args.host!r}: {cause.strerror or cause}; pass an "
                    "address of this machine, such as 127.0.0.1 or ::1"
                ) from None
            if args.ca_out:
                try:
                    server.write_ca(args.ca_out)
                except OSError as error:
                    raise CommandError(
                        f"cannot write the CA certificate to {args.ca_out}: {error.strerror}; "
                        "pass a --ca-out path in a directory that exists and is writable"
                    ) from None
                print(f"CA certificate written to {args.ca_out}", file=sys.stderr)
            print(server.api_url, flush=True)
            print("serving; press Ctrl-C to stop", file=sys.stderr, flush=True)
            async for _ in terminations:
                nursery.cancel_scope.cancel()
                break

    try:
        trio.run(serve)
    except BaseException as error:
        cause = sole_cause(error)
        if isinstance(cause, StrictMismatch):
            print(f"lprecord: strict replay stopped: {cause}", file=sys.stderr)
            return 1
        if not isinstance(cause, KeyboardInterrupt):
            raise
    report_pending_faults(server)
    return 0


def report_pending_faults(server: FakeServer) -> None:
    """Print the scheduled faults that no request got, which a client then never saw."""
    pending = server.pending_faults
    if not pending:
        return
    count = "1 scheduled fault" if len(pending) == 1 else f"{len(pending)} scheduled faults"
    print(f"lprecord: {count} never fired:", file=sys.stderr)
    for scheduled in pending:
        due = (
            f"request {scheduled.at_step}"
            if scheduled.at_step is not None
            else f"{scheduled.at_time:g} s"
        )
        print(
            f"lprecord:   {describe_fault(scheduled.fault)} on {scheduled.on} from {due}",
            file=sys.stderr,
        )


# -- capture ------------------------------------------------------------------


def run_capture(args: argparse.Namespace) -> int:
    """Record a session from VK (or --api-url), or the embedded demo without a token."""
    token = args.token or os.environ.get("VK_TOKEN")
    # An empty --api-url is an error below, not the default, so it never means VK by accident.
    if args.demo or (not token and args.api_url is None):
        return run_demo_capture(args)
    if not token:
        raise CommandError(
            "no token: pass --token or set VK_TOKEN (the server at --api-url needs one too)"
        )
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    api_url = lpcore.DEFAULT_API_URL if args.api_url is None else args.api_url
    check_api_url(api_url, "--api-url")
    header = Header(
        lp_version=3,
        mode=args.mode,
        wait=args.wait,
        api_version=lpcore.DEFAULT_API_VERSION,
        source=f"lprecord capture from {api_url}",
    )
    _check_output(args)
    target: Path = args.output
    # An existing file is replaced only by a capture that recorded a session. Until then
    # the capture goes to a file beside it, so a failed attempt loses nothing.
    if target.exists():
        args.output = target.with_name(target.name + ".partial")
    print(f"recording from {api_url} into {args.output}; press Ctrl-C to stop", file=sys.stderr)
    scrubber = Scrubber() if args.scrub else None
    try:
        trio.run(_capture, args, token, api_url, context, header, scrubber)
    except BaseException as error:
        if not isinstance(sole_cause(error), KeyboardInterrupt):
            if args.output != target:
                print(f"{target} is kept; this capture is in {args.output}", file=sys.stderr)
            raise
        print("interrupted; every finished exchange is in the file", file=sys.stderr)
    _print_summary(args.output)
    problem = session_problem(args.output)
    if problem is not None:
        kept = f"; {target} is kept" if args.output != target else ""
        print(
            f"lprecord: error: no long poll session was recorded ({problem}); check --api-url, "
            f"the token and the network{kept}",
            file=sys.stderr,
        )
        return 1
    if args.output != target:
        args.output.replace(target)
        print(f"replaced {target}")
    return 0


def check_api_url(api_url: str, option: str) -> None:
    """Reject an API base URL that LongPoll would reject, before any file is touched."""
    try:
        lptrio_check_api_url(api_url)
    except ValueError as error:
        raise CommandError(
            f"invalid {option}: {error}; pass a URL such as {lpcore.DEFAULT_API_URL}"
        ) from None


def session_problem(path: Path) -> str | None:
    """Return why the fixture at `path` contains no session to replay, or None if it has one."""
    try:
        Timeline.from_fixture(read_fixture(path, allow_truncated_tail=True))
    except (ValueError, FixtureError) as error:
        return str(error)
    return None


def _check_output(args: argparse.Namespace) -> None:
    """Reject an -o file that exists without --force, and create its directory."""
    if args.output.is_dir():
        raise CommandError(f"{args.output} is a directory; pass a file name to -o")
    if args.output.exists() and not args.force:
        raise CommandError(
            f"{args.output} exists; pass --force to overwrite it or choose another -o file"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)


def run_demo_capture(args: argparse.Namespace) -> int:
    """Record the shipped demo session from an embedded fake server, in virtual time."""
    _check_output(args)
    source = demo_fixture_path()
    print(
        "no token given (--token or VK_TOKEN): recording the embedded demo instead.\n"
        f"A fake long poll server on 127.0.0.1 replays {source.name} over TLS; the real lptrio "
        "client polls it and the recorder writes what it receives. Time is virtual, so "
        "held polls take no real time.",
        file=sys.stderr,
    )
    fixture = read_fixture(source)
    header = Header(
        lp_version=fixture.header.lp_version,
        mode=args.mode,
        wait=args.wait,
        api_version=fixture.header.api_version,
        user_id=fixture.header.user_id,
        source=f"lprecord capture of the embedded demo ({source.name})",
    )
    # With --updates or --duration the capture may stop before the session ends.
    stops_early = args.updates is not None or args.duration is not None
    if args.duration is None:
        # Long enough for every recorded update, plus one poll that times out.
        args.duration = _recorded_duration(fixture) + args.wait + 1
    scrubber = Scrubber() if args.scrub else None

    async def demo() -> None:
        server = FakeServer(fixture, tls=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            context = server.client_ssl_context()
            await _capture(args, DEMO_TOKEN, server.api_url, context, header, scrubber)
            nursery.cancel_scope.cancel()

    # Imported here: trio.testing imports pytest, which would slow every other command.
    import trio.testing

    trio.run(demo, clock=trio.testing.MockClock(autojump_threshold=0))
    _print_summary(args.output)
    if scrubber is not None:
        # The same scrubber maps the source's ids to the fake ids the capture got.
        fixture = scrub_fixture(fixture, scrubber)
    _compare_with_source(args.output, fixture, stops_early=stops_early)
    return 0


async def _capture(
    args: argparse.Namespace,
    token: str,
    api_url: str,
    context: ssl.SSLContext | None,
    header: Header,
    scrubber: Scrubber | None = None,
) -> None:
    # The pytest plugin's record modes call this too, without a scrubber.
    if scrubber is not None:
        header = scrubber.scrub_header(header)
    progress = CaptureProgress(live=sys.stderr.isatty())
    with FixtureWriter.create(args.output, header, overwrite=args.force) as writer:
        start = trio.current_time()
        recorder = Recorder(
            writer, token=token, start=start, scrub=scrubber or False, on_record=progress.record
        )
        longpoll = LongPoll(
            token,
            args.mode,
            wait=args.wait,
            api_url=api_url,
            ssl_context=context,
            observer=recorder,
        )
        try:
            async with trio.open_nursery() as nursery:
                if progress.live:
                    nursery.start_soon(progress.redraw_every_second, start)
                await _receive_updates(longpoll, args.updates, args.duration)
                nursery.cancel_scope.cancel()
        finally:
            progress.finish()
        await longpoll.aclose()


async def _receive_updates(longpoll: LongPoll, count: int | None, duration: float | None) -> None:
    """Consume updates until `count` of them arrived or `duration` seconds passed."""
    received = 0
    with trio.move_on_after(duration) if duration is not None else nullcontext():
        async for _update in longpoll:
            received += 1
            if count is not None and received >= count:
                break


class CaptureProgress:
    """Reports a capture's progress on standard error as the recorder writes exchanges.

    With `live` (standard error is a terminal) one status line is redrawn in place. Otherwise
    one line is logged for each poll that brought updates or a failure and for each other
    exchange that failed, never one for an empty poll. Updates are counted in poll replies,
    so events recovered through getLongPollHistory are not among them.
    """

    def __init__(self, *, live: bool) -> None:
        self.live = live
        self.polls = 0
        self.updates = 0
        self.failures = 0
        self._line_open = False

    def record(self, exchange: Exchange) -> None:
        """Count one recorded exchange and report it."""
        outcome = exchange_outcome(exchange)
        if exchange.kind is ExchangeKind.POLL:
            self.polls += 1
        self.updates += outcome.updates
        if outcome.failure is not None:
            self.failures += 1

        # The exchange ended this many seconds after the capture started.
        elapsed = exchange.t + exchange.elapsed
        if self.live:
            self.redraw(elapsed)
        else:
            self._log(exchange, outcome, elapsed)

    def redraw(self, elapsed: float) -> None:
        """Redraw the status line in place."""
        print(
            f"\relapsed {elapsed:.1f} s, polls {self.polls}, updates {self.updates}, "
            f"failures {self.failures}",
            end="",
            file=sys.stderr,
            flush=True,
        )
        self._line_open = True

    async def redraw_every_second(self, start: float) -> NoReturn:
        """Keep the elapsed time current while a poll is held; `start` is on trio's clock."""
        while True:
            self.redraw(trio.current_time() - start)
            await trio.sleep(1)

    def finish(self) -> None:
        """End the status line, so later output starts on a line of its own."""
        if self._line_open:
            print(file=sys.stderr, flush=True)
            self._line_open = False

    def _log(self, exchange: Exchange, outcome: Outcome, elapsed: float) -> None:
        if exchange.kind is ExchangeKind.POLL:
            what = f"poll {self.polls}"
        else:
            what = exchange.url.rsplit("/", 1)[-1]
        if outcome.failure is not None:
            news = f"{outcome.failure} ({count_of(self.failures, 'failure')} total)"
        elif outcome.updates:
            news = f"+{count_of(outcome.updates, 'update')} ({self.updates} total)"
        else:
            return
        print(f"{elapsed:.1f} s: {what}, {news}", file=sys.stderr, flush=True)


def _recorded_duration(fixture: Fixture) -> float:
    return max((e.t + e.elapsed for e in fixture.exchanges), default=0.0)


def _print_summary(path: Path) -> None:
    print(f"wrote {path}")
    fixture = read_fixture(path, allow_truncated_tail=True)
    for line in summarize(fixture).lines():
        print(line)
    if fixture.header.scrubbed:
        print(f"scrubbed:    {_describe_skipped(fixture)}")


def _describe_skipped(fixture: Fixture) -> str:
    # The header is line 1, so exchange i (from 0) is on line i + 2.
    skipped = [
        str(number)
        for number, exchange in enumerate(fixture.exchanges, start=2)
        if exchange.extra.get(SKIPPED_FIELD)
    ]
    if not skipped:
        return "ids and text replaced in every exchange"
    return (
        "ids and text replaced; bodies that are not JSON were left as they were, "
        f"on lines {', '.join(skipped)}"
    )


def _compare_with_source(path: Path, source: Fixture, *, stops_early: bool) -> None:
    """Check that the capture contains the replayed updates, or their start if it stopped early."""
    capture = read_fixture(path)
    # The replay writes each array for the capture's mode, as VK would.
    gated = (
        gate_update(u.raw, recorded=u.mode, requested=capture.header.mode)
        for u in Timeline.from_fixture(source).updates
    )
    replayed = [raw for raw in gated if raw is not OMITTED]
    captured = [u.raw for u in Timeline.from_fixture(capture).updates]
    expected = replayed[: len(captured)] if stops_early else replayed
    verdict = "identical" if captured == expected else "DIFFERENT"
    if len(expected) < len(replayed):
        verdict += f" to the first {len(expected)} replayed"
    print(
        f"check:       {len(captured)} updates captured, {len(replayed)} replayed; "
        f"arrays {verdict}"
    )
    if captured != expected:
        raise CommandError("the captured updates differ from the replayed fixture")


# -- check --------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    """Check each fixture; return 1 on any finding, 2 when a file cannot be read, else 0."""
    status = 0
    for path in args.fixtures:
        try:
            report = check_fixture(path)
        except OSError as error:
            print(f"lprecord: error: cannot read {path}: {error.strerror}", file=sys.stderr)
            status = 2
            continue
        for finding in report.findings:
            print(finding)
        if report.ok:
            print(f"{path}: OK, {count_of(report.exchanges or 0, 'exchange')}, no secrets found")
        elif status == 0:
            status = 1
    return status


# -- scrub --------------------------------------------------------------------


def run_scrub(args: argparse.Namespace) -> int:
    """Write a scrubbed copy of a fixture."""
    source, target = args.input, args.output
    if target.resolve() == source.resolve() or (
        target.exists() and source.exists() and target.samefile(source)
    ):
        raise CommandError(f"{target} is the input file; write the scrubbed copy to another path")
    if target.exists() and not args.force:
        raise CommandError(f"{target} exists; pass --force to overwrite it or choose another OUT")

    scrubbed = scrub_fixture(read_fixture(source))
    write_fixture(target, scrubbed.header, scrubbed.exchanges, overwrite=args.force)
    print(f"wrote {target}")
    print(f"scrubbed:    {_describe_skipped(scrubbed)}")
    return 0
