"""The next group's connections are opened while the safety gate of the group before is
evaluated (execution.engine.Engine._preconnect): authentication only. A gate that fails
leaves those servers without a single command received, and their connections closed."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from audit.models import AuditEntry
from cmdb.models import Credential, EnvSchema, SecurityPolicy, Server
from execution import playbooks
from execution.engine import Engine
from execution.models import ServerRun
from execution.rolling import Group, RolloutStrategy
from execution.services import ArtifactStore, run_task
from tests.factories import CredentialFactory, ServerFactory
from tests.waiting import wait_until

from .engine_helpers import approved_task, commands_received, deploy_parameters, fast_port_wait, version_of


def connections_to(server) -> int:
    """Established TCP connections from this host to the server's sshd, read from the kernel."""
    ip = socket.inet_aton(server.ip)
    want = "{:08X}:{:04X}".format(int.from_bytes(ip, "little"), server.ssh_port)
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[2] == want and row[3] == "01")


@pytest.mark.testbed
@pytest.mark.django_db(transaction=True)
def test_a_failed_gate_leaves_the_preconnected_group_untouched(testbed, testbed_cmdb, monkeypatch):
    servers = testbed_cmdb
    fast_port_wait(servers, 3)
    first = [s for s in servers if s.rolling_group == 1]
    second = [s for s in servers if s.rolling_group == 2]
    victim = first[0]
    before = {s.server_id: commands_received(testbed, s.server_id) for s in second}
    task = approved_task(servers, parameters=deploy_parameters("2.0.0"))
    real_gate = Engine.safety_gate
    seen: dict[str, int] = {}

    def gate_after_a_crash(engine, contexts):
        if not seen:
            # Group 1 (5 servers) left 3 of the 8 threads idle from its start: next-group servers
            # are authenticated before this gate runs, and have received nothing.
            wait_until(lambda: sum(1 for s in second if connections_to(s)) >= 3, 10, 0.02)
            seen.update({s.server_id: connections_to(s) for s in second if connections_to(s)})
            assert {s.server_id: commands_received(testbed, s.server_id) for s in second} == before
            # Then a server of the batch just done really goes down: the real gate must see it.
            os.kill(int(Path(victim.app_path).parent.joinpath("run", "was.pid").read_text()), signal.SIGKILL)
        return real_gate(engine, contexts)

    monkeypatch.setattr(Engine, "safety_gate", gate_after_a_crash)
    outcome = run_task(task.pk)
    task.refresh_from_db()
    assert outcome == "FAILED_ROLLED_BACK", task.failure_reason
    assert task.failure_reason.startswith("안전 게이트:") and victim.server_id in task.failure_reason
    assert len(seen) >= 3
    # Not one command reached the group the gate held, and its connections are gone.
    assert {s.server_id: commands_received(testbed, s.server_id) for s in second} == before
    assert [version_of(s) for s in second] == ["1.0.0"] * len(second)
    wait_until(lambda: not any(connections_to(s) for s in second), 10, 0.05)


@pytest.mark.testbed
@pytest.mark.django_db(transaction=True)
def test_a_refusal_met_ahead_of_its_group_is_audited_once_and_reported_at_its_first_step(testbed, testbed_cmdb):
    second = [s for s in testbed_cmdb if s.rolling_group == 2]
    target = second[2]  # connected while group 1 runs
    Server.objects.filter(pk=target.pk).update(host_key_fingerprint="SHA256:" + "A" * 43)
    logged = commands_received(testbed, target.server_id)
    fast_port_wait(testbed_cmdb, 3)
    outcome = run_task(approved_task(testbed_cmdb, parameters=deploy_parameters("2.0.0")).pk)
    run = ServerRun.objects.select_related("execution__task").get(server_ref=target.server_id)
    assert (outcome, run.state) == ("FAILED_ROLLED_BACK", "REFUSED")
    assert "호스트 키" in run.execution.task.failure_reason and target.server_id in run.execution.task.failure_reason
    assert AuditEntry.objects.filter(action="ssh.host_key_refused", target=target.server_id).count() == 1
    assert commands_received(testbed, target.server_id) == logged
    assert {version_of(s) for s in second} == {"1.0.0"}


@pytest.mark.django_db
def test_servers_their_profile_gate_or_ssh_policy_checks_first_are_never_lined_up_early():
    plain = ServerFactory(credential=CredentialFactory(kind=Credential.Kind.PRIVATE_KEY), ssh_port=22)
    others = [
        ServerFactory(
            system=plain.system, credential=CredentialFactory(kind=Credential.Kind.PRIVATE_KEY), ssh_port=port
        )
        for port in (22, 2222)
    ]
    EnvSchema.objects.create(server=others[0], middleware="jeus", was_home="/opt/was")  # the scan comes first
    SecurityPolicy.objects.create(system=plain.system, ssh_auth="key", port_min=22, port_max=22)  # 2222 forbidden
    servers = [plain, *others]
    engine = Engine(
        playbook=playbooks.build("SERVICE_RESTART", {}),
        servers=servers,
        strategy=RolloutStrategy(),
        artifacts=ArtifactStore(),
        inspection=None,
    )
    engine.contexts = {}  # as a run starts them
    engine._preconnect(Group(1, "batch", 1, servers))
    assert [ctx.server for ctx in engine._lined_up] == [plain]
