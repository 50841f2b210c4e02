"""VK's escaping of text in long poll events."""

import html

#: The characters VK escapes in message text, with their entities. ``&``
#: comes first, so the entities the later steps add are not escaped twice.
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"))


def escape_text(text: str) -> str:
    """Escape message text the way VK sends it: ``& < > "`` as entities, newline as ``<br>``.

    `unescape_text` undoes this exactly. VK's documentation does not say
    whether it escapes apostrophes or other characters, so only these four
    and the newline are replaced.
    """
    for character, entity in _ESCAPES:
        text = text.replace(character, entity)
    return text.replace("\n", "<br>")


def unescape_text(raw_text: str) -> str:
    """Undo VK's escaping of message text: ``<br>`` to newline, then entities once.

    VK escapes ``& < > "`` and sends line breaks as a literal ``<br>``.
    `<br>` is replaced first, then each entity is decoded exactly once, so
    a typed ``&quot;`` (sent as ``&amp;quot;``) stays ``&quot;`` and a typed
    ``<br>`` (sent as ``&lt;br&gt;``) stays text.
    """
    return html.unescape(raw_text.replace("<br>", "\n"))
