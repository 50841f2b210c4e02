"""VK's escaping of text in long poll events."""

import html


def unescape_text(raw_text: str) -> str:
    """Undo VK's escaping of message text: ``<br>`` to newline, then entities once.

    VK escapes ``& < > "`` and sends line breaks as a literal ``<br>``.
    `<br>` is replaced first, then each entity is decoded exactly once, so
    a typed ``&quot;`` (sent as ``&amp;quot;``) stays ``&quot;`` and a typed
    ``<br>`` (sent as ``&lt;br&gt;``) stays text.
    """
    return html.unescape(raw_text.replace("<br>", "\n"))
