"""Tests for the typed readers of a message's additional-data and attachments objects."""

from lpcore import AdditionalData, Attachments, MessageNew, parse_update

STICKER_AND_LINK = {
    "attach1_type": "sticker",
    "attach1": "9001",
    "attach1_product_id": "42",
    "attach2_type": "link",
    "attach2": "placeholder",
    "attach2_url": "https://example.com/",
    "attach2_title": "Example",
    "attach3_type": "doc",
    "attach3": "100002_456239021",
    "attach3_kind": "audiomsg",
    "attachments_count": "1",
    "attachments": '[{"type":"sticker","sticker":{"sticker_id":9001}}]',
    "fwd": "0_0",
    "reply": '{"conversation_message_id":54}',
    "geo": "100002_1",
    "future_key": "kept",
}


def test_attachments_listed_in_number_order() -> None:
    attachments = Attachments(STICKER_AND_LINK)

    listed = attachments.items_list

    assert [item.type for item in listed] == ["sticker", "link", "doc"]
    assert listed[0].id == "9001"
    assert listed[0].fields == {"product_id": "42"}
    assert listed[1].fields == {"url": "https://example.com/", "title": "Example"}
    assert listed[2].kind == "audiomsg"


def test_attachments_nested_json_decoded() -> None:
    attachments = Attachments(STICKER_AND_LINK)

    assert attachments.reply == {"conversation_message_id": 54}
    assert attachments.full_objects == [{"type": "sticker", "sticker": {"sticker_id": 9001}}]
    assert attachments.fwd == "0_0"
    assert attachments.geo == "100002_1"
    assert attachments["future_key"] == "kept"


def test_broken_nested_json_reads_as_none() -> None:
    attachments = Attachments({"reply": '{"conversation_message_id":', "attachments": "[1,"})

    assert attachments.reply is None
    assert attachments.full_objects is None


def test_broken_reply_does_not_break_update() -> None:
    raw = [4, 1000010, 33, 100002, 1700000063, "x", {}, {"reply": "{oops"}, 0]

    update = parse_update(raw)

    assert isinstance(update, MessageNew)
    assert update.attachment_data.reply is None
    assert update.text == "x"


def test_additional_data_typed_fields() -> None:
    data = AdditionalData(
        {
            "title": " ... ",
            "from": " 100003 ",
            "emoji": "1",
            "payload": '{"command":"start"}',
            "keyboard": {"one_time": False, "buttons": []},
            "source_act": "chat_title_update",
            "source_text": "A &amp; B",
            "source_mid": "100002",
            "expire_ttl": "3600",
            "unlisted": "kept",
        }
    )

    assert data.title == " ... "
    assert data.from_id == 100003
    assert data.has_emoji
    assert data.payload == {"command": "start"}
    assert data.keyboard == {"one_time": False, "buttons": []}
    assert data.source_act == "chat_title_update"
    assert data.source_text == "A & B"
    assert data.source_mid == 100002
    assert data.expire_ttl == 3600
    assert data["unlisted"] == "kept"


def test_additional_data_wrong_types_read_as_none() -> None:
    data = AdditionalData({"from": "abc", "payload": "{broken", "keyboard": "[]", "title": 5})

    assert data.from_id is None
    assert data.payload is None
    assert data.keyboard is None
    assert data.title is None
    assert not data.has_emoji


def test_message_without_objects_gives_empty_readers() -> None:
    update = parse_update([4, 1000013, 1])

    assert isinstance(update, MessageNew)
    assert len(update.additional_data) == 0
    assert update.attachment_data.items_list == []
