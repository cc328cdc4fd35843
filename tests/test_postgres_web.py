"""Daphne on PostgreSQL: every request runs in its own thread under ASGI, so per-thread
persistent connections would pile up until PostgreSQL refuses clients ("too many clients
already", seen in the approval benchmark). The psycopg pool must bound them."""

from __future__ import annotations

import http.client
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.live import ROOT, daphne
from tests.pg import PostgresCluster, django_env

SETUP = (
    "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
    "u = User.objects.create_user('api', password='x'); print(Token.objects.create(user=u).key)"
)


@pytest.mark.postgres
def test_many_requests_do_not_exhaust_postgres_connections(tmp_path):
    with PostgresCluster() as cluster:
        env = django_env(cluster.url, tmp_path)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
        token = (
            subprocess.run(
                [sys.executable, "manage.py", "shell", "-c", SETUP],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        with daphne(env, tmp_path / "daphne.log") as address:
            host, port = address.split(":")

            def get(_: int) -> int:
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                conn.request("GET", "/api/v1/tasks/", headers={"Authorization": f"Token {token}"})
                status = conn.getresponse().status
                conn.close()
                return status

            # More requests than PostgreSQL's default max_connections (100).
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(get, range(160)))
            with psycopg.connect(cluster.url, autocommit=True) as conn:
                open_connections = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                ).fetchone()[0]
    assert statuses.count(200) == 160, sorted(set(statuses))
    assert open_connections <= 25  # the pool's max_size (20) plus this check's own connection
