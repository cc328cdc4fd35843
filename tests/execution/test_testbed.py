"""The testbed itself: lifecycle, every fault switch, scale mode, CMDB registration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.core.management import call_command

from audit.models import AuditEntry
from execution.transport import scan_host_key
from testbed import FAULTS, Testbed, TestbedError, procs
from tests.waiting import wait_until

pytestmark = pytest.mark.testbed


def health(srv) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(srv["health_url"], timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ""


def deploy_locally(tb: Testbed, srv, version: str):
    """What the engine does over SSH, done locally: stop, swap, start."""
    assert tb.run_script(srv, "shutdown.sh").returncode == 0
    Path(srv["app_path"], "app.war").write_text(f"version={version}\n")
    return tb.run_script(srv, "startup.sh")


def wait_health(srv, want: int | None, timeout: float = 20.0) -> tuple[int | None, str]:
    """The health answer once its status is ``want`` (None: nothing answers)."""
    wait_until(lambda: health(srv)[0] == want, timeout, message=f"health of {srv['server_id']} never became {want}")
    return health(srv)


def test_lifecycle_up_status_down(tmp_path):
    tb = Testbed(tmp_path / "tb")
    manifest = tb.up(2)
    try:
        srv = manifest["servers"][1]
        assert set(srv) >= {
            "server_id",
            "hostname",
            "ip",
            "ssh_port",
            "host_key_fingerprint",
            "http_port",
            "root",
            "app_path",
            "deploy_path",
            "backup_path",
            "script_path",
            "log_path",
            "health_url",
            "rolling_group",
            "canary",
        }
        assert json.loads(tb.manifest_path.read_text()) == manifest
        assert [s["rolling_group"] for s in manifest["servers"]] == [1, 2]
        assert scan_host_key(srv["ip"], srv["ssh_port"], 5) == srv["host_key_fingerprint"]
        assert health(srv) == (200, "OK version=1.0.0")
        assert "INFO: Server startup in" in Path(srv["log_path"]).read_text()
        status = tb.status()
        assert [r["sshd"] for r in status["servers"]] == ["up", "up"]
        with pytest.raises(TestbedError, match="already running"):
            tb.up(2)
    finally:
        tb.down()
    assert not tb.manifest_path.exists()
    assert procs.tagged_processes(str(tb.base)) == []
    assert not procs.port_listening(srv["ip"], srv["ssh_port"]) and health(srv)[0] is None


def test_bad_arguments_are_refused(tmp_path):
    tb = Testbed(tmp_path / "tb")
    with pytest.raises(TestbedError, match="between 1 and"):
        tb.up(0)
    with pytest.raises(TestbedError, match="sshd processes"):
        tb.up(3, sshd_processes=4)
    with pytest.raises(TestbedError, match="no testbed"):
        tb.status()


def test_health_fail_spares_the_old_version(clean_testbed):
    srv = clean_testbed.servers[0]
    clean_testbed.fault(srv["server_id"], "health_fail")
    old_pid = procs.read_pid(Path(srv["pid_file"]))
    result = deploy_locally(clean_testbed, srv, "2.0.0")
    assert result.returncode == 0  # the script starts it; the port never comes up
    new_pid = procs.read_pid(Path(srv["pid_file"]))
    assert new_pid != old_pid
    # The stand-in gives up and exits.
    wait_until(lambda: not procs.alive(new_pid), timeout=20, message=f"pid {new_pid} still running")
    assert not procs.port_listening("127.0.0.1", srv["http_port"])
    assert "SEVERE: Failed to initialize connector" in Path(srv["log_path"]).read_text()
    deploy_locally(clean_testbed, srv, "1.0.0")  # the rollback target still works
    assert wait_health(srv, 200) == (200, "OK version=1.0.0")
    assert "health_fail" in clean_testbed.status()["servers"][0]["faults"]


def test_health_500_and_log_error(clean_testbed):
    a, b = clean_testbed.servers[1], clean_testbed.servers[2]
    clean_testbed.fault(a["server_id"], "health_500")
    clean_testbed.fault(b["server_id"], "log_error")
    deploy_locally(clean_testbed, a, "2.0.0")
    deploy_locally(clean_testbed, b, "2.0.0")
    assert wait_health(a, 500) == (500, "FAIL version=2.0.0")
    assert wait_health(b, 200) == (200, "OK version=2.0.0")
    assert "ERROR" in Path(b["log_path"]).read_text()


def test_script_exit_faults(clean_testbed):
    srv = clean_testbed.servers[3]
    clean_testbed.fault(srv["server_id"], "shutdown_exit", times=1)
    first, second = clean_testbed.run_script(srv, "shutdown.sh"), clean_testbed.run_script(srv, "shutdown.sh")
    assert (first.returncode, second.returncode) == (1, 0)
    clean_testbed.fault(srv["server_id"], "startup_exit")
    Path(srv["app_path"], "app.war").write_text("version=2.0.0\n")
    result = clean_testbed.run_script(srv, "startup.sh")
    assert result.returncode == 1 and "startup failed" in result.stderr
    assert "injected fault startup_exit" in Path(srv["log_path"]).read_text()


def test_rollback_fail_breaks_only_the_restored_version(clean_testbed):
    srv = clean_testbed.servers[4]
    clean_testbed.fault(srv["server_id"], "rollback_fail")
    assert deploy_locally(clean_testbed, srv, "2.0.0").returncode == 0
    assert wait_health(srv, 200)[1] == "OK version=2.0.0"
    restored = deploy_locally(clean_testbed, srv, "1.0.0")
    assert restored.returncode == 1 and "restored version failed" in restored.stderr


def test_hang_blocks_until_the_process_group_is_killed(clean_testbed):
    srv = clean_testbed.servers[5]
    clean_testbed.fault(srv["server_id"], "hang")
    assert clean_testbed.run_script(srv, "shutdown.sh").returncode == 0
    Path(srv["app_path"], "app.war").write_text("version=2.0.0\n")
    proc = subprocess.Popen(
        ["bash", str(Path(srv["script_path"]) / "startup.sh")], start_new_session=True, env={"PATH": os.environ["PATH"]}
    )
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=1)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=5) == -signal.SIGKILL


def test_disk_full_shrinks_the_staging_dir(clean_testbed):
    srv = clean_testbed.servers[6]
    clean_testbed.fault(srv["server_id"], "disk_full")
    df = subprocess.run(["df", "-Pk", srv["deploy_path"]], capture_output=True, text=True, check=True)
    assert int(df.stdout.splitlines()[1].split()[3]) < 100  # KiB available
    with pytest.raises(OSError):
        Path(srv["deploy_path"], "big").write_bytes(b"x" * (1 << 20))
    clean_testbed.fault(srv["server_id"], "disk_full", on=False)
    Path(srv["deploy_path"], "big").write_bytes(b"x" * (1 << 20))


def test_sshd_down_and_back_with_the_same_key(clean_testbed):
    srv = clean_testbed.servers[7]
    clean_testbed.fault(srv["server_id"], "sshd_down")
    assert not procs.port_listening(srv["ip"], srv["ssh_port"])
    assert "sshd_down" in clean_testbed.active_faults(srv)
    clean_testbed.fault(srv["server_id"], "sshd_down", on=False)
    assert scan_host_key(srv["ip"], srv["ssh_port"], 5) == srv["host_key_fingerprint"]


def test_unknown_fault_and_reset(clean_testbed):
    with pytest.raises(TestbedError, match="unknown fault"):
        clean_testbed.fault("srv-01", "meteor")
    with pytest.raises(TestbedError, match="unknown testbed server"):
        clean_testbed.fault("srv-99", "hang")
    srv = clean_testbed.servers[8]
    for name in FAULTS - {"sshd_down"}:
        clean_testbed.fault(srv["server_id"], name)
    Path(srv["app_path"], "app.war").write_text("version=3.0.0\n")
    Path(srv["backup_path"], "app.war").write_text("version=1.0.0\n")
    clean_testbed.reset()
    assert clean_testbed.active_faults(srv) == []
    assert wait_health(srv, 200) == (200, "OK version=1.0.0")
    assert not any(Path(srv["backup_path"]).iterdir())


def test_scale_mode_many_servers_per_sshd(tmp_path):
    tb = Testbed(tmp_path / "scale")
    manifest = tb.up(12, sshd_processes=3)
    try:
        assert manifest["mode"] == "scale" and len(manifest["sshd"]) == 3
        assert len({(s["ip"], s["ssh_port"]) for s in manifest["servers"]}) == 3
        assert all(health(s)[0] == 200 for s in manifest["servers"])
        srv = manifest["servers"][4]
        old = procs.read_pid(Path(srv["pid_file"]))
        assert deploy_locally(tb, srv, "2.0.0").returncode == 0
        new = procs.read_pid(Path(srv["pid_file"]))
        assert new != old and procs.alive(new) and not procs.alive(old)
        assert wait_health(srv, 200) == (200, "OK version=2.0.0")
        os.kill(new, signal.SIGKILL)  # the "JVM" dies: its port closes
        assert wait_health(srv, None)[0] is None
    finally:
        tb.down()
    assert procs.tagged_processes(str(tb.base)) == []


def test_management_command(tmp_path, capsys):
    base = str(tmp_path / "cmd")
    call_command("testbed", "up", "--servers", "2", "--dir", base)
    try:
        call_command("testbed", "fault", "srv-01", "startup_exit", "--dir", base)
        call_command("testbed", "status", "--dir", base)
        out = capsys.readouterr().out
        assert "srv-01" in out and "startup_exit" in out and "v1.0.0" in out
    finally:
        call_command("testbed", "down", "--dir", base)
    assert "stopped" in capsys.readouterr().out


def test_register_testbed_pins_keys_and_vaults_the_key(testbed_cmdb, testbed):
    manifest = testbed.manifest
    assert [s.server_id for s in testbed_cmdb] == [s["server_id"] for s in manifest["servers"]]
    first = testbed_cmdb[0]
    assert first.host_key_fingerprint == manifest["servers"][0]["host_key_fingerprint"]
    assert first.service_port == manifest["servers"][0]["http_port"]
    key_text = Path(manifest["credential"]["private_key_path"]).read_text()
    assert first.credential.reveal() == key_text and key_text not in first.credential.secret_encrypted
    first.full_clean(exclude=["system", "credential"])
    entry = AuditEntry.objects.filter(action="cmdb.testbed_registered").latest("seq")
    assert entry.payload["servers"] == 10 and "PRIVATE" not in str(entry.payload)
