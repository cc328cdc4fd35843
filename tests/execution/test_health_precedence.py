"""The server's own CMDB row wins over its system's health criteria (system-wide defaults).

Found by the demo: the seeded criteria said port 8080 for every system, so a deploy to the
testbed (ports 18001…) waited for 8080, failed, and its rollback failed the same way."""

from __future__ import annotations

from cmdb.models import HealthCriteria
from execution.healthcheck import Health
from tests.factories import ServerFactory


def test_server_port_and_log_path_override_system_criteria(db):
    server = ServerFactory(service_port=18001, log_path="/srv/was1/logs/catalina.out")
    criteria = HealthCriteria.objects.create(
        system=server.system, service_port=8080, log_path="/app/logs/x.log", port_wait_seconds=7
    )
    health = Health.for_server(server, criteria)
    assert health.port == 18001
    assert health.log_path == "/srv/was1/logs/catalina.out"
    assert health.port_wait_seconds == 7  # criteria still supply what the server row does not say


def test_criteria_fill_in_when_the_server_row_is_silent(db):
    server = ServerFactory(service_port=None, log_path="")
    criteria = HealthCriteria.objects.create(system=server.system, service_port=8080, log_path="/app/logs/x.log")
    health = Health.for_server(server, criteria)
    assert health.port == 8080 and health.log_path == "/app/logs/x.log"
