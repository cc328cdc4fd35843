"""Mirror every entry and checkpoint to JSON Lines files outside the database.

One file per UTC day (``audit-YYYY-MM-DD.jsonl`` in settings.AUDIT_MIRROR_DIR), written
after the transaction commits, so a rolled-back append never appears. Lines from
concurrent writers can land slightly out of seq order; readers sort by seq. A failed
mirror write is logged and does not undo the committed entry: the database stays the
record, the mirror is the copy the database administrator cannot quietly rewrite.
"""

from __future__ import annotations

import logging
import os
from datetime import date
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)
_made: set[Path] = set()


def mirror_file(day: date) -> Path:
    return Path(settings.AUDIT_MIRROR_DIR) / f"audit-{day:%Y-%m-%d}.jsonl"


def append(day: date, text: str) -> None:
    path = mirror_file(day)
    try:
        if path.parent not in _made:
            path.parent.mkdir(parents=True, exist_ok=True)
            _made.add(path.parent)
        # O_APPEND: each write lands whole at the end even with several processes writing.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError:
        logger.exception("audit mirror write to %s failed", path)
