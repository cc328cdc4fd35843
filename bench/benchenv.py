"""Set up Django for a benchmark script: a throwaway data dir (SQLite by default, or
GUARDIA_DATABASE_URL), migrated, with the role groups. Import this before any model.

A script run with ``--postgres`` gets a throwaway PostgreSQL 15 cluster (synchronous
commit on) instead, started here before Django reads its settings and stopped at exit.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GUARDIA_DATA_DIR", tempfile.mkdtemp(prefix="guardia-bench-"))
POSTGRES = "--postgres" in sys.argv[1:]
if POSTGRES:
    from tests.pg import PostgresCluster

    _CLUSTER = PostgresCluster().start()
    os.environ["GUARDIA_DATABASE_URL"] = _CLUSTER.url

    @atexit.register
    def _stop_cluster() -> None:
        from django.db import connections

        connections.close_all()
        _CLUSTER.stop()


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


def web_load_arguments(more: Callable[[argparse.ArgumentParser], None]) -> argparse.Namespace:
    """The options every web load benchmark shares (clients, Daphne processes, database),
    plus the script's own (``more`` adds them)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--servers", type=int, default=1, help="Daphne processes (clients spread round-robin)")
    parser.add_argument("--postgres", action="store_true", help="run against a throwaway PostgreSQL cluster")
    more(parser)
    return parser.parse_args()


@contextmanager
def web_servers(count: int, **env: str) -> Iterator[tuple[list[str], str]]:
    """A throwaway Redis for Channels and ``count`` Daphne processes on this benchmark's
    database; yields their host:port addresses and the Redis URL."""
    from django.conf import settings

    from tests.live import daphne, redis_server, service_env

    db_url = os.environ.get("GUARDIA_DATABASE_URL") or f"sqlite:///{settings.DATABASES['default']['NAME']}"
    with redis_server() as redis_url, ExitStack() as stack:
        environment = service_env(db_url, redis_url, GUARDIA_LOG_LEVEL="WARNING", **env)
        yield [stack.enter_context(daphne(environment, DATA_DIR / f"daphne{i}.log")) for i in range(count)], redis_url


def load_line() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
