"""The `lprecord` command: capture, replay and show long poll sessions."""

import argparse
import math
import os
import ssl
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TextIO

import trio
import trio.testing

import lpcore
from lptrio import LongPoll

from ._fixture import Fixture, FixtureError, FixtureWriter, Header, read_fixture
from ._recorder import Recorder
from ._server import FakeServer
from ._summary import summarize
from ._timeline import Timeline

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
        "--mode", type=int, default=int(lpcore.Mode.DEFAULT), help="mode bit mask (default: 234)"
    )
    capture.add_argument(
        "--wait",
        type=int,
        default=25,
        help="seconds the server may hold a poll, 0-90 (default: 25)",
    )
    capture.add_argument("--updates", type=int, metavar="N", help="stop after N updates")
    capture.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    capture.add_argument(
        "--demo", action="store_true", help="record the embedded demo even if a token is set"
    )
    capture.add_argument(
        "--force", action="store_true", help="overwrite the output file if it exists"
    )

    replay = commands.add_parser(
        "replay",
        help="serve a fixture as a fake long poll server",
        description="Serve a fixture as a fake VK long poll server until interrupted. "
        "Prints the API base URL to give to a client.",
    )
    replay.add_argument("fixture", type=Path, help="fixture file to replay")
    replay.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    replay.add_argument(
        "--port", type=int, default=0, help="port to bind (default: any free port)"
    )
    replay.add_argument(
        "--tls", action="store_true", help="serve HTTPS with a throwaway certificate authority"
    )
    replay.add_argument(
        "--ca-out", type=Path, metavar="PEM", help="with --tls, write the CA certificate here"
    )
    replay.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="time factor; 2 replays twice as fast (default: 1)",
    )

    show = commands.add_parser(
        "show", help="summarize a fixture", description="Print a fixture's header and a summary."
    )
    show.add_argument("fixture", type=Path, help="fixture file to summarize")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `lprecord` command; return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "capture":
            return run_capture(args)
        if args.command == "replay":
            return run_replay(args)
        return run_show(args)
    except BaseException as error:
        cause = sole_cause(error)
        if isinstance(cause, KeyboardInterrupt):
            return 130
        if isinstance(cause, CommandError | FixtureError | lpcore.LongPollError | OSError):
            print(f"lprecord: error: {cause}", file=sys.stderr)
            return 2
        raise


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
    print(
        f"redacted:    {', '.join(header.redacted) or 'nothing'}; scrubbed: {header.scrubbed}",
        file=out,
    )
    for line in summarize(fixture).lines():
        print(line, file=out)
    return 0


# -- replay -------------------------------------------------------------------


def run_replay(args: argparse.Namespace) -> int:
    """Serve a fixture until interrupted."""
    if args.ca_out and not args.tls:
        raise CommandError("--ca-out needs --tls: a plain HTTP server has no certificate")
    server = FakeServer(
        args.fixture, host=args.host, port=args.port, tls=args.tls, speed=args.speed
    )

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            if args.ca_out:
                server.write_ca(args.ca_out)
                print(f"CA certificate written to {args.ca_out}", file=sys.stderr)
            print(server.api_url, flush=True)
            print("serving; press Ctrl-C to stop", file=sys.stderr, flush=True)

    try:
        trio.run(serve)
    except BaseException as error:
        if not isinstance(sole_cause(error), KeyboardInterrupt):
            raise
    return 0


# -- capture ------------------------------------------------------------------


def run_capture(args: argparse.Namespace) -> int:
    """Record a session from VK (or --api-url), or the embedded demo without a token."""
    token = args.token or os.environ.get("VK_TOKEN")
    if args.demo or (not token and not args.api_url):
        return run_demo_capture(args)
    if not token:
        raise CommandError(
            "no token: pass --token or set VK_TOKEN (the server at --api-url needs one too)"
        )
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    api_url = args.api_url or lpcore.DEFAULT_API_URL
    header = Header(
        lp_version=3,
        mode=args.mode,
        wait=args.wait,
        api_version=lpcore.DEFAULT_API_VERSION,
        source=f"lprecord capture from {api_url}",
    )
    print(f"recording from {api_url} into {args.output}; press Ctrl-C to stop", file=sys.stderr)
    _check_output(args)
    try:
        trio.run(_capture, args, token, api_url, context, header)
    except BaseException as error:
        if not isinstance(sole_cause(error), KeyboardInterrupt):
            raise
        print("\ninterrupted; every finished exchange is in the file", file=sys.stderr)
    _print_summary(args.output)
    return 0


def _check_output(args: argparse.Namespace) -> None:
    if args.output.exists() and not args.force:
        raise CommandError(
            f"{args.output} exists; pass --force to overwrite it or choose another -o file"
        )


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
    if args.duration is None:
        # Long enough for every recorded update, plus one poll that times out.
        args.duration = _recorded_duration(fixture) + args.wait + 1

    async def demo() -> None:
        server = FakeServer(fixture, tls=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            await _capture(args, DEMO_TOKEN, server.api_url, server.client_ssl_context(), header)
            nursery.cancel_scope.cancel()

    trio.run(demo, clock=trio.testing.MockClock(autojump_threshold=0))
    _print_summary(args.output)
    _compare_with_source(args.output, fixture)
    return 0


async def _capture(
    args: argparse.Namespace,
    token: str,
    api_url: str,
    context: ssl.SSLContext | None,
    header: Header,
) -> None:
    with FixtureWriter.create(args.output, header, overwrite=args.force) as writer:
        recorder = Recorder(writer, token=token, start=trio.current_time())
        longpoll = LongPoll(
            token,
            args.mode,
            wait=args.wait,
            api_url=api_url,
            ssl_context=context,
            observer=recorder,
        )
        received = 0
        limit = args.duration if args.duration is not None else math.inf
        with trio.move_on_after(limit) if limit != math.inf else nullcontext():
            async for _update in longpoll:
                received += 1
                _progress(recorder.exchanges, received)
                if args.updates is not None and received >= args.updates:
                    break
        await longpoll.aclose()
    if sys.stderr.isatty():
        print(file=sys.stderr)


def _progress(exchanges: int, updates: int) -> None:
    if sys.stderr.isatty():
        print(f"\rexchanges {exchanges}, updates {updates}", end="", file=sys.stderr, flush=True)


def _recorded_duration(fixture: Fixture) -> float:
    return max((e.t + e.elapsed for e in fixture.exchanges), default=0.0)


def _print_summary(path: Path) -> None:
    print(f"wrote {path}")
    for line in summarize(read_fixture(path, allow_truncated_tail=True)).lines():
        print(line)


def _compare_with_source(path: Path, source: Fixture) -> None:
    expected = [u.raw for u in Timeline.from_fixture(source).updates]
    captured = [u.raw for u in Timeline.from_fixture(read_fixture(path)).updates]
    verdict = "identical" if captured == expected else "DIFFERENT"
    print(
        f"check:       {len(captured)} updates captured, {len(expected)} replayed; "
        f"arrays {verdict}"
    )
    if captured != expected:
        raise CommandError("the captured updates differ from the replayed fixture")
