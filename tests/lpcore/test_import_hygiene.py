"""Tests that importing lpcore loads no I/O, clock, randomness or logging module.

CPython itself imports `time` at startup (zipimport needs it), so a plain
look at `sys.modules` after ``import lpcore`` cannot tell whether lpcore
needs it. The child interpreter therefore removes every module of the
forbidden list that is already loaded before it imports lpcore: any
import of one of them from lpcore, direct or through the standard
library, puts it back.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lpcore

FORBIDDEN_MODULES = (
    "asyncio",
    "h11",
    "logging",
    "random",
    "selectors",
    "socket",
    "ssl",
    "threading",
    "time",
    "trio",
)

CHILD_SCRIPT = """
import json
import sys

forbidden = json.loads(sys.argv[1])
preloaded = sorted(name for name in forbidden if name in sys.modules)
for name in preloaded:
    del sys.modules[name]

exec(sys.argv[2])

print(json.dumps({"preloaded": preloaded, "loaded": sorted(sys.modules)}))
"""


def import_in_child(statement: str) -> dict[str, list[str]]:
    """Run `statement` in a fresh interpreter and return its module lists.

    ``preloaded`` names the forbidden modules the interpreter loaded at startup
    (they are removed before `statement` runs), ``loaded`` every module at the end.
    """
    completed = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT, json.dumps(FORBIDDEN_MODULES), statement],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, list[str]] = json.loads(completed.stdout)
    return result


@pytest.fixture(scope="module")
def lpcore_import() -> dict[str, list[str]]:
    """Modules of a fresh interpreter after ``import lpcore``."""
    return import_in_child("import lpcore")


@pytest.mark.parametrize("name", FORBIDDEN_MODULES)
def test_import_loads_no_forbidden_module(lpcore_import: dict[str, list[str]], name: str) -> None:
    loaded = lpcore_import["loaded"]

    assert "lpcore._session" in loaded
    assert name not in loaded


def test_child_detects_time_import_through_stdlib() -> None:
    # logging imports time, so this shows that a module evicted at startup
    # is seen again when an import brings it back.
    result = import_in_child("import lpcore, logging")

    assert "time" in result["preloaded"]
    assert "time" in result["loaded"]
    assert "logging" in result["loaded"]


def imported_top_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


LPCORE_SOURCES = sorted(Path(lpcore.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("path", LPCORE_SOURCES, ids=lambda path: path.name)
def test_source_imports_no_forbidden_module(path: Path) -> None:
    imported = imported_top_names(path.read_text(encoding="utf-8"))

    assert imported.isdisjoint(FORBIDDEN_MODULES), sorted(imported & set(FORBIDDEN_MODULES))


def test_lpcore_sources_found() -> None:
    assert [path.name for path in LPCORE_SOURCES if path.name == "_session.py"] == ["_session.py"]
