"""A user's string (group, attribute or file name) as literal text in a Markdown CI summary."""

from __future__ import annotations

import unicodedata

# HTML that GitHub renders, and the Markdown (GFM, with $math$) that would turn a user's string
# into a link, an image, code, emphasis or a new table cell
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BACKSLASHED = frozenset("\\`*_[]|#~$!")


def md_escape(text: object) -> str:
    """A group named `<img src=x>` or `[x](url)` must not become HTML or a link in a CI summary."""
    out = []
    for c in str(text):
        if c in _ENTITIES:
            out.append(_ENTITIES[c])
        elif c in _BACKSLASHED:
            out.append("\\" + c)
        elif unicodedata.category(c) == "Cc":  # a newline would end the table row
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)
