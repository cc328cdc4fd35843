"""The "scan host key" admin action against a real OpenSSH sshd on loopback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse

from audit.models import AuditEntry
from cmdb.models import Credential, Server
from tests.factories import ServerFactory
from tests.waiting import free_port, wait_for_port

pytestmark = pytest.mark.django_db

SSHD_CONFIG = """HostKey {host_key}
PidFile {pid_file}
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile none
UseDNS no
LogLevel ERROR
"""


@pytest.fixture
def sshd(tmp_path):
    """A real sshd with a fresh host key; yields (port, fingerprint per ssh-keygen -lf)."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    host_key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    expected = subprocess.run(
        ["ssh-keygen", "-lf", f"{host_key}.pub"], check=True, capture_output=True, text=True
    ).stdout.split()[1]
    config = tmp_path / "sshd_config"
    config.write_text(SSHD_CONFIG.format(host_key=host_key, pid_file=tmp_path / "sshd.pid"))
    port = free_port()
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config), "-p", str(port), "-o", "ListenAddress=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            wait_for_port(port, proc, timeout=10)
        except (RuntimeError, AssertionError):
            proc.terminate()
            raise RuntimeError(f"sshd did not start: {proc.communicate(timeout=10)[1].decode()}") from None
        yield port, expected, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_action(client, *servers: Server):
    return client.post(
        reverse("admin:cmdb_server_changelist"),
        {"action": "scan_host_key", "_selected_action": [s.pk for s in servers]},
        follow=True,
    )


def test_scan_pins_the_fingerprint_sshd_really_presents(admin_client, sshd):
    port, expected, _ = sshd
    assert expected.startswith("SHA256:")
    server = ServerFactory(server_id="scan-me", ip="127.0.0.1", ssh_port=port)

    response = run_action(admin_client, server)

    server.refresh_from_db()
    assert server.host_key_fingerprint == expected
    entry = AuditEntry.objects.get(action="cmdb.host_key_scan")
    assert entry.target == "scan-me" and entry.payload == {"old": "", "new": expected, "changed": False}
    assert any(expected in str(m) for m in get_messages(response.wsgi_request))


def test_a_changed_key_is_recorded_old_to_new_and_flagged(admin_client, sshd):
    port, expected, _ = sshd
    old = "SHA256:" + "A" * 43
    server = ServerFactory(server_id="rekeyed", ip="127.0.0.1", ssh_port=port, host_key_fingerprint=old)

    response = run_action(admin_client, server)

    server.refresh_from_db()
    assert server.host_key_fingerprint == expected
    entry = AuditEntry.objects.get(action="cmdb.host_key_scan")
    assert entry.payload == {"old": old, "new": expected, "changed": True}
    assert any("CHANGED" in str(m) for m in get_messages(response.wsgi_request))


def test_an_unreachable_server_is_reported_and_nothing_changes(admin_client, sshd):
    port, expected, _ = sshd
    down = ServerFactory(server_id="down", ip="127.0.0.1", ssh_port=free_port())
    up = ServerFactory(server_id="up", ip="127.0.0.1", ssh_port=port)

    response = run_action(admin_client, down, up)

    down.refresh_from_db()
    up.refresh_from_db()
    assert down.host_key_fingerprint == "" and up.host_key_fingerprint == expected
    assert list(AuditEntry.objects.filter(action="cmdb.host_key_scan").values_list("target", flat=True)) == ["up"]
    assert any("down: scan failed" in str(m) for m in get_messages(response.wsgi_request))


def test_seed_demo_testbed_registers_the_manifest_servers(settings, sshd):
    port, expected, tmp_path = sshd
    client_key = tmp_path / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client_key)], check=True)
    settings.TESTBED_DIR = tmp_path / "testbed"
    settings.TESTBED_DIR.mkdir()
    server = {
        "server_id": "tb-01",
        "hostname": "tb-01.testbed",
        "ip": "127.0.0.1",
        "ssh_port": port,
        "host_key_fingerprint": expected,
        "http_port": 18080,
        "app_path": "/srv/tb/app",
        "deploy_path": "/srv/tb/d",
        "backup_path": "/srv/tb/b",
        "script_path": "/srv/tb/s",
        "log_path": "/srv/tb/l/catalina.out",
        "health_url": "http://127.0.0.1:18080/health",
        "rolling_group": 1,
        "canary": True,
    }
    manifest = {
        "base_dir": str(tmp_path),
        "servers": [server],
        "credential": {"username": "root", "private_key_path": str(client_key), "kind": "private_key"},
    }
    (settings.TESTBED_DIR / "manifest.json").write_text(json.dumps(manifest))

    call_command("seed_demo", "--testbed")

    registered = Server.objects.get(server_id="tb-01")
    assert registered.system.code == "NIA-TESTBED" and registered.host_key_fingerprint == expected
    assert registered.credential.kind == Credential.Kind.PRIVATE_KEY
    assert "PRIVATE KEY" in registered.credential.reveal()
