"""Text for narrow places (a timeline line, an inbox row, a chat preview)."""

from __future__ import annotations


def shorten(text: str, limit: int) -> str:
    """The first line-broken words up to `limit` characters, cut at a word boundary and
    marked with an ellipsis, never in the middle of a word or a task id."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    # A single word longer than half the room is cut anyway rather than leaving nothing.
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:·—-") + "…"
