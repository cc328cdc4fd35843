"""django-q2 entry points: thin wrappers around intake services."""

from __future__ import annotations


def read_photo(photo_id: str) -> str | None:
    """Queued after commit when a photo of an error screen is stored: OCR and the parser's suggestion."""
    from .photos import read

    photo = read(photo_id)
    return photo.status if photo else None
