"""Tests of the format migration hook with made-up older formats.

Each test raises FORMAT_VERSION and installs migrations, so version 1 plays an older format.
One step and a missing step are covered in test_fixture.py; these cover chained steps, errors
raised by a step, and writing a migrated file back.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from lprecord import _fixture
from lprecord._fixture import ExchangeKind, FixtureError, read_fixture, write_fixture

# Version 1 as an old format: the header keeps its settings in one "session" object, and a
# poll's kind is "longpoll".
OLD_HEADER: dict[str, Any] = {
    "lprecord": 1,
    "tool": "lprecord 0.0.1",
    "session": {"lp_version": 3, "mode": 234, "wait": 25, "api_version": "5.131"},
}
OLD_POLL: dict[str, Any] = {
    "t": 0.5,
    "elapsed": 0.25,
    "kind": "longpoll",
    "request": {"method": "GET", "url": "https://im.vk.com/nim1", "params": {"ts": "1"}},
    "response": {"status": 200, "body": {"json": {"ts": 2, "updates": []}}},
}


def flatten_session(obj: dict[str, Any]) -> dict[str, Any]:
    """Step 1 to 2: move the session settings to the top level of the header."""
    obj.update(obj.pop("session"))
    return obj


def rename_longpoll(obj: dict[str, Any]) -> dict[str, Any]:
    """Step 1 to 2: "longpoll" became "kind2_poll", a name step 2 to 3 renames again."""
    if obj.get("kind") == "longpoll":
        obj["kind"] = "kind2_poll"
    return obj


def note_step_two(obj: dict[str, Any]) -> dict[str, Any]:
    """Step 2 to 3: needs step 1's flat header, so it fails if run out of order."""
    obj["source"] = f"migrated; API {obj['api_version']}"
    return obj


def rename_kind2_poll(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("kind") == "kind2_poll":
        obj["kind"] = "poll"
    return obj


def reject_exchange(obj: dict[str, Any]) -> dict[str, Any]:
    raise ValueError("kind 'longpoll' without a 'ts' cannot be migrated")


def keep(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def write_old(path: Path) -> Path:
    lines = [json.dumps(OLD_HEADER), json.dumps(OLD_POLL)]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


@pytest.fixture
def two_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the current version 3, with migrations from 1 and from 2."""
    monkeypatch.setattr(_fixture, "FORMAT_VERSION", 3)
    monkeypatch.setattr(
        _fixture,
        "_MIGRATIONS",
        {
            1: _fixture._Migration(header=flatten_session, exchange=rename_longpoll),
            2: _fixture._Migration(header=note_step_two, exchange=rename_kind2_poll),
        },
    )


@pytest.mark.usefixtures("two_steps")
def test_steps_chain_in_order(tmp_path: Path) -> None:
    fixture = read_fixture(write_old(tmp_path / "old.jsonl"))

    assert fixture.header.mode == 234
    assert fixture.header.source == "migrated; API 5.131"
    assert fixture.exchanges[0].kind is ExchangeKind.POLL


@pytest.mark.usefixtures("two_steps")
def test_migrated_file_written_current(tmp_path: Path) -> None:
    fixture = read_fixture(write_old(tmp_path / "old.jsonl"))
    target = tmp_path / "new.jsonl"

    write_fixture(target, fixture.header, fixture.exchanges)

    header_line = target.read_text("utf-8").splitlines()[0]
    assert header_line.startswith('{"lprecord": 3, ')
    assert read_fixture(target).exchanges == fixture.exchanges


def test_step_error_names_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fixture, "FORMAT_VERSION", 2)
    migration = _fixture._Migration(header=flatten_session, exchange=reject_exchange)
    monkeypatch.setattr(_fixture, "_MIGRATIONS", {1: migration})
    path = write_old(tmp_path / "old.jsonl")

    with pytest.raises(FixtureError) as caught:
        read_fixture(path)

    assert caught.value.line == 2
    assert caught.value.reason == "kind 'longpoll' without a 'ts' cannot be migrated"
    assert str(caught.value).startswith(f"{path}:2: ")


def test_unmigrated_output_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A migration that leaves the old shape gets the reader's usual error for that line.
    monkeypatch.setattr(_fixture, "FORMAT_VERSION", 2)
    monkeypatch.setattr(
        _fixture, "_MIGRATIONS", {1: _fixture._Migration(header=keep, exchange=keep)}
    )
    path = write_old(tmp_path / "old.jsonl")

    with pytest.raises(FixtureError) as caught:
        read_fixture(path)

    assert caught.value.line == 1
    assert caught.value.reason == "header is missing 'lp_version'"
