"""lprecord: record VK long poll sessions and replay them to any consumer."""

from ._fixture import (
    FORMAT_VERSION,
    Exchange,
    ExchangeKind,
    Fixture,
    FixtureError,
    FixtureWriter,
    Header,
    read_fixture,
)
from ._recorder import Recorder
from ._server import FakeServer, open_fake_server, run_fake_server_in_thread
from ._summary import Summary, summarize
from ._timeline import ReplayEngine, Timeline

__all__ = [
    "FORMAT_VERSION",
    "Exchange",
    "ExchangeKind",
    "FakeServer",
    "Fixture",
    "FixtureError",
    "FixtureWriter",
    "Header",
    "Recorder",
    "ReplayEngine",
    "Summary",
    "Timeline",
    "open_fake_server",
    "read_fixture",
    "run_fake_server_in_thread",
    "summarize",
]
