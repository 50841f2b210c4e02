"""lprecord: record VK long poll sessions and replay them to any consumer.

The public names load their modules on first use (PEP 562), so that the
pytest plugin, which pytest imports in every run of every project where
this package is installed, costs no trio, trustme or lpcore import until
a test asks for a fake server.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._faults import Endpoint, Fault, FaultKind, FaultSchedule, ScenarioError, ScheduledFault
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
    from ._strict import StrictMismatch
    from ._summary import Summary, summarize
    from ._timeline import ReplayEngine, Timeline

_MODULE_OF = {
    "FORMAT_VERSION": "._fixture",
    "Exchange": "._fixture",
    "ExchangeKind": "._fixture",
    "Fixture": "._fixture",
    "FixtureError": "._fixture",
    "FixtureWriter": "._fixture",
    "Header": "._fixture",
    "read_fixture": "._fixture",
    "Endpoint": "._faults",
    "Fault": "._faults",
    "FaultKind": "._faults",
    "FaultSchedule": "._faults",
    "ScenarioError": "._faults",
    "ScheduledFault": "._faults",
    "StrictMismatch": "._strict",
    "Recorder": "._recorder",
    "FakeServer": "._server",
    "open_fake_server": "._server",
    "run_fake_server_in_thread": "._server",
    "Summary": "._summary",
    "summarize": "._summary",
    "ReplayEngine": "._timeline",
    "Timeline": "._timeline",
}

__all__ = [
    "FORMAT_VERSION",
    "Endpoint",
    "Exchange",
    "ExchangeKind",
    "FakeServer",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "Fixture",
    "FixtureError",
    "FixtureWriter",
    "Header",
    "Recorder",
    "ReplayEngine",
    "ScenarioError",
    "ScheduledFault",
    "StrictMismatch",
    "Summary",
    "Timeline",
    "open_fake_server",
    "read_fixture",
    "run_fake_server_in_thread",
    "summarize",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'lprecord' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
