"""A JavaScript VK client, unmodified, against `lprecord replay` over TLS.

The client is vk-io 4.10.1, the VK API client with the most downloads on
npm, and the newest release of its current major version. Its
`PollingTransport` calls messages.getLongPollServer at the API base URL
given to `new VK({apiBaseUrl})` and polls ``https://{server}`` with the
`server` it returns. tests/e2e/js/poll_vk_io.mjs wires the transport to
vk-io's `Updates` dispatcher as `vk.updates.startPolling()` does, and
prints each update array together with the context that vk-io builds for
it. Its agent trusts only the CA file that replay writes and connects to
127.0.0.1 only.

The tests are skipped when `node` or `npm` is missing, or when
`npm ci` cannot install tests/e2e/js (it needs the npm registry).
"""

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import FIXTURES, recorded_updates, replay_server

CHAT_SESSION = FIXTURES / "chat_session.jsonl"
JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "poll_vk_io.mjs"
#: npm writes this file last in a successful install.
INSTALLED_MARKER = JS_DIR / "node_modules" / ".package-lock.json"
#: poll_vk_io.mjs needs util.parseArgs (Node 18.3) and structuredClone (Node 17).
MIN_NODE_VERSION = (18, 3)
#: The chat session lasts 182 recorded seconds, so about 3.6 s at this speed.
SPEED = 50
#: Real seconds for the replay server to start, and for vk-io to receive every update.
TIMEOUT = 15.0
NPM_CI_TIMEOUT = 300.0

# The type of the context that vk-io 4.10.1 builds for each polling event code
# (`pollingContextsEvents` in its lib/index.js). vk-io polls with `version=19`
# and reads message events under the codes 10002-10007, 10013 and 10018, the
# version-3 code plus 10000, which replay sends to version-19 polls.
VK_IO_CONTEXTS = {
    8: "friend_activity",
    9: "friend_activity",
    81: "friend_activity",
    10: "dialog_flags",
    12: "dialog_flags",
    63: "typing",
    64: "typing",
    65: "typing",
    66: "typing",
    67: "typing",
    114: "dialog_notification_settings",
}
#: The context that vk-io builds for each recorded message event, by its version-3 code.
MESSAGE_CONTEXTS = {
    2: "message_flags",
    3: "message_flags",
    4: "message",
    5: "message",
    18: "message",
    6: "messages_read",
    7: "messages_read",
    13: "dialog_messages",
}
#: Version-3 codes that version 19 sends as the code plus 10000.
RENUMBERED_CODES = frozenset({2, 3, 4, 5, 6, 7, 13, 18})
#: The chat session's last update, a new message event without the text. Version 19
#: sends it as ``[10004, conversation_message_id, flags, minor_id]``, and vk-io 4.10.1
#: raises a TypeError on it, because its `transformMessage` reads `attachments.geo`
#: from index 8, which the short form does not have.
SHORT_NEW_MESSAGE = [4, 1000013, 1]


@dataclass(frozen=True)
class Received:
    """One update as poll_vk_io.mjs printed it."""

    #: The array that vk-io's PollingTransport received.
    update: list[Any]
    #: The `type` of the context that vk-io's Updates dispatcher built, or None.
    context: str | None
    #: The error that the dispatcher raised for this update, or None.
    dispatch_error: str | None


def node_version(node: str) -> tuple[int, ...]:
    output = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    return tuple(int(part) for part in re.findall(r"\d+", output.stdout)[:3])


def install_vk_io(npm: str) -> None:
    """Run `npm ci` in JS_DIR unless node_modules is newer than package-lock.json.

    Skips the calling test when the install fails, which it does without
    access to the npm registry.
    """
    lockfile = JS_DIR / "package-lock.json"
    if INSTALLED_MARKER.exists() and INSTALLED_MARKER.stat().st_mtime >= lockfile.stat().st_mtime:
        return
    command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
    try:
        result = subprocess.run(
            command, cwd=JS_DIR, capture_output=True, text=True, timeout=NPM_CI_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm ci in {JS_DIR} timed out after {NPM_CI_TIMEOUT} s")
    if result.returncode != 0:
        # npm's first error lines name the error, such as "code ECONNREFUSED", and a
        # stack trace follows them.
        errors = [line for line in result.stderr.splitlines() if line.startswith("npm error")]
        summary = "; ".join(line.removeprefix("npm error").strip() for line in errors[:4])
        pytest.skip(f"npm ci in {JS_DIR} failed, as it does without the npm registry: {summary}")


def receive_with_vk_io(node: str, api_url: str, ca: Path, count: int) -> list[Received]:
    """Run poll_vk_io.mjs until `count` updates arrive; return what it printed."""
    command = [node, str(SCRIPT), "--api-url", api_url, "--ca", str(ca)]
    command += ["--count", str(count), "--timeout", str(TIMEOUT)]
    # vk-io reports polling errors, which it retries, only to the debug log.
    env = {**os.environ, "DEBUG": "vk-io:updates"}
    result = subprocess.run(
        command,
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT + 5,
    )
    assert result.returncode == 0, f"poll_vk_io.mjs failed:\n{result.stderr[-4000:]}"

    received = []
    for line in result.stdout.splitlines():
        item = json.loads(line)
        received.append(
            Received(
                update=item["update"],
                context=item["context"],
                dispatch_error=item.get("dispatchError"),
            )
        )
    return received


def recorded_codes(path: Path) -> list[int]:
    """Return the event code of every update array in a fixture, in order."""
    codes = []
    for raw in recorded_updates(path):
        assert isinstance(raw, list), raw
        assert isinstance(raw[0], int), raw
        codes.append(raw[0])
    return codes


@pytest.fixture(scope="module")
def vk_io_chat_session(tmp_path_factory: pytest.TempPathFactory) -> list[Received]:
    """What vk-io received from one replay of the chat session."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run vk-io; install Node.js 18.3 or newer")
    version = node_version(node)
    if version < MIN_NODE_VERSION:
        pytest.skip(f"node {version} is too old for poll_vk_io.mjs; install Node.js 18.3 or newer")
    install_vk_io(npm)

    expected = recorded_updates(CHAT_SESSION)
    with replay_server(
        CHAT_SESSION, tmp_path_factory.mktemp("vk_io"), speed=SPEED, timeout=TIMEOUT
    ) as (api_url, ca):
        return receive_with_vk_io(node, api_url, ca, len(expected))


def test_vk_io_receives_chat_session(vk_io_chat_session: list[Received]) -> None:
    """vk-io's transport receives every update of the chat session, in order, in the
    version-19 layout that its `version=19` polls ask for.

    Events whose layout version 19 does not change arrive as recorded. The
    renumbered ones arrive under the version-3 code plus 10000 with an int
    conversation_message_id at index 1. Those that carry the text have the
    recorded text and message id at indexes 5 and 9, one more in 10004,
    whose minor_id at index 3 the others lack.
    """
    expected = recorded_updates(CHAT_SESSION)
    received = [item.update for item in vk_io_chat_session]
    assert len(received) == len(expected)

    for update, recorded in zip(received, expected, strict=True):
        assert isinstance(recorded, list), recorded
        code = recorded[0]
        if code not in RENUMBERED_CODES:
            assert update == recorded
            continue
        assert update[0] == code + 10000, update
        assert type(update[1]) is int, update
        if code in (2, 3, 4, 5, 18) and len(recorded) > 5:
            shift = 1 if code == 4 else 0
            assert update[5 + shift] == recorded[5], update
            assert update[9 + shift] == recorded[1], update


def test_vk_io_contexts_for_other_events(vk_io_chat_session: list[Received]) -> None:
    """vk-io builds its documented context for each update that is not a message event.

    Codes that vk-io does not handle (11, 14, 20, 51, 52, 61, 62, 70, 80
    and 999 in the chat session) get no context and are skipped.
    """
    codes = recorded_codes(CHAT_SESSION)
    assert len(vk_io_chat_session) == len(codes)
    others = [
        (item, code)
        for item, code in zip(vk_io_chat_session, codes, strict=True)
        if code not in MESSAGE_CONTEXTS
    ]
    assert len(others) == 18

    for item, code in others:
        assert item.dispatch_error is None, item.update
        assert item.context == VK_IO_CONTEXTS.get(code), item.update


def test_vk_io_contexts_for_message_events(vk_io_chat_session: list[Received]) -> None:
    """vk-io builds a message context for each message event of the chat session.

    vk-io 4.10.1 sends `version=19` and, in its `transformMessage`, reads
    message events in the layout it expects of that version: the code plus
    10000, conversation_message_id second and the message id eleventh.
    Before it reads them, vk-io inserts a 0 at index 3 of every code but
    10004, which has minor_id there. vk-io
    4.8.3 and older polled with version 10 and the version-3 codes and
    layout. replay converts the recorded version-3 arrays to that layout. The one
    exception is SHORT_NEW_MESSAGE, on which vk-io raises.
    """
    codes = recorded_codes(CHAT_SESSION)
    assert len(vk_io_chat_session) == len(codes)
    messages = [
        (item, code)
        for item, code in zip(vk_io_chat_session, codes, strict=True)
        if code in MESSAGE_CONTEXTS
    ]
    assert len(messages) == 22

    expected = recorded_updates(CHAT_SESSION)
    short = [
        item
        for item, recorded in zip(vk_io_chat_session, expected, strict=True)
        if recorded == SHORT_NEW_MESSAGE
    ]
    assert len(short) == 1
    assert short[0].context is None
    assert short[0].dispatch_error is not None
    assert short[0].dispatch_error.startswith("TypeError"), short[0].dispatch_error

    for item, code in messages:
        if item in short:
            continue
        assert item.dispatch_error is None, item.update
        assert item.context == MESSAGE_CONTEXTS[code], item.update
