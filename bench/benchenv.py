"""Set up Django for a benchmark script: a throwaway data dir (SQLite by default, or
GUARDIA_DATABASE_URL), migrated, with the role groups. Import this before any model."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GUARDIA_DATA_DIR", tempfile.mkdtemp(prefix="guardia-bench-"))
os.environ.setdefault("GUARDIA_CHANNEL_LAYER", "memory")
os.environ.setdefault("GUARDIA_LOG_LEVEL", "WARNING")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guardia.settings")

import django

django.setup()

from django.core.management import call_command

call_command("migrate", verbosity=0)
DATA_DIR = Path(os.environ["GUARDIA_DATA_DIR"])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * (len(ordered) - 1) + 0.5))]


def machine_line() -> str:
    """Printed with every figure: the date, the cores and how loaded they were."""
    import datetime
    import os as _os

    load = ", ".join(f"{x:.1f}" for x in _os.getloadavg())
    return f"{datetime.date.today()} · {_os.cpu_count()} cores · load average {load}"
