"""The offline bundle, as a closed-network operator uses it: scripts/bundle.sh builds it here
(the only step that needs the network), then install.sh installs and starts it inside a
network namespace with nothing but loopback (`unshare -n`), a request is filed, approved and
deployed on the sshd testbed, and the chain verifies; a newer bundle upgrades it in place
keeping the chain; a release whose migration fails is rolled back to the previous one; an
altered file, an unlisted file or another release key is refused before anything is touched.

The Debian packages are checked (`--debs check`: which ones dpkg would install) but not
installed: this machine is the build host and has them already, and a test does not
reinstall the host's packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Three installs, each creating two virtualenvs from the wheelhouse: minutes, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.testbed, pytest.mark.timeout(2400)]


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Two bundles of this tree (offline-a, offline-b), built with a throwaway release key."""
    base = tmp_path_factory.mktemp("bundle")
    key = base / "release.pem"
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(key))
    openssl("pkey", "-in", str(key), "-pubout", "-out", str(base / "release.pub"))
    built = {}
    for version in ("offline-a", "offline-b"):
        started = time.monotonic()
        done = subprocess.run(
            ["scripts/bundle.sh", "--version", version, "--key", str(key), "--out", str(base / "out")],
            cwd=ROOT, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        tar = base / "out" / f"guardia-{version}.tar"
        subprocess.run(["tar", "-xf", str(tar), "-C", str(base)], check=True)
        built[version] = base / f"guardia-{version}"
        print(f"bundle {version}: {tar.stat().st_size / 2**20:.0f} MiB in {time.monotonic() - started:.0f} s")
    return {"base": base, "key": key, "pub": base / "release.pub", **built}


def install(bundle: Path, pub: Path, prefix: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [str(bundle / "install.sh"), "--key", str(pub), "--prefix", str(prefix), "--data", str(prefix / "data"),
            "--debs", "check", *extra]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=900)


def offline(action: str, bundle: Path, release, prefix: Path) -> dict:
    """Run tests/offline_drive.py in a new network namespace (loopback only)."""
    argv = ["unshare", "-n", sys.executable, "-m", "tests.offline_drive", action, str(bundle), str(release["pub"]),
            str(prefix), str(prefix / "data")]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def resign(bundle: Path, key: Path) -> None:
    """Regenerate the manifest and its signature, as a release build does."""
    listing = subprocess.run(
        "find . -type f ! -name MANIFEST.sha256 ! -name MANIFEST.sig -printf '%P\\n' | LC_ALL=C sort "
        "| xargs -d '\\n' sha256sum > MANIFEST.sha256",
        shell=True, cwd=bundle, check=True,
    )  # fmt: skip
    assert listing.returncode == 0
    openssl("pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-in", str(bundle / "MANIFEST.sha256"),
            "-out", str(bundle / "MANIFEST.sig"))  # fmt: skip


def broken_release(release, version: str) -> Path:
    """offline-b with one more audit migration that fails, signed with the release key."""
    bundle = release["base"] / f"guardia-{version}"
    shutil.copytree(release["offline-b"], bundle)
    project = bundle / "project"
    (project / "RELEASE").write_text(version + "\n")
    migrations = sorted(p.stem for p in (project / "audit" / "migrations").glob("0*.py"))
    (project / "audit" / "migrations" / "9999_broken_release.py").write_text(
        "from django.db import migrations\n\n\n"
        "def fail(apps, schema_editor):\n    raise RuntimeError('this release cannot migrate')\n\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = [('audit', '{migrations[-1]}')]\n"
        "    operations = [migrations.RunPython(fail)]\n"
    )
    resign(bundle, release["key"])
    return bundle


def test_install_run_upgrade_and_roll_back_with_no_network(release, tmp_path):
    prefix = tmp_path / "opt"

    first = offline("install", release["offline-a"], release, prefix)
    assert first["links"] == ["lo"] and first["internet"] is False
    assert first["console_status"] in (200, 302)
    assert first["status"] == "PENDING_PM_VALIDATION", first
    assert first["chain"]["ok"] is True and first["current"] == "offline-a"
    print(f"offline install and start: {first['install_and_start_seconds']} s")

    upgraded = offline("upgrade", release["offline-b"], release, prefix)
    assert upgraded["returncode"] == 0, upgraded["output"]
    assert upgraded["current"] == "offline-b"
    assert upgraded["chain"]["ok"] is True
    assert upgraded["chain"]["entries"] > upgraded["before"]["entries"]  # backup, verification: one chain
    assert list((prefix / "data" / "backups").iterdir())

    broken = broken_release(release, "offline-c")
    failed = offline("upgrade", broken, release, prefix)
    assert failed["returncode"] == 5, failed["output"]
    assert "이전 릴리스 offline-b" in failed["output"]
    assert failed["current"] == "offline-b"  # still running the previous release
    assert failed["chain"]["ok"] is True and failed["chain"]["entries"] >= upgraded["chain"]["entries"]


@pytest.mark.parametrize("tamper", ["altered", "unlisted", "foreign-key", "no-key"])
def test_a_tampered_bundle_or_another_key_is_refused_before_anything_is_touched(release, tmp_path, tamper):
    bundle = tmp_path / "bundle"
    shutil.copytree(release["offline-a"], bundle)
    pub = release["pub"]
    extra: tuple[str, ...] = ()
    if tamper == "altered":
        with open(bundle / "project" / "manage.py", "a") as handle:
            handle.write("\nimport os  # slipped in\n")
        expected = "project/manage.py"
    elif tamper == "unlisted":
        (bundle / "wheelhouse" / "extra-0.1-py3-none-any.whl").write_bytes(b"PK")
        expected = "wheelhouse/extra-0.1-py3-none-any.whl"
    elif tamper == "foreign-key":
        other = tmp_path / "other.pem"
        openssl("genpkey", "-algorithm", "ed25519", "-out", str(other))
        resign(bundle, other)  # a bundle signed by someone else, with their key inside
        openssl("pkey", "-in", str(other), "-pubout", "-out", str(bundle / "release-key.pub"))
        resign(bundle, other)
        expected = "다른 키"
    else:
        pub = None
        expected = "--key"
    prefix = tmp_path / "opt"
    if pub is None:
        done = subprocess.run([str(bundle / "install.sh"), "--prefix", str(prefix)], capture_output=True, text=True)
    else:
        done = install(bundle, pub, prefix, *extra)
    assert done.returncode == 3, done.stdout + done.stderr
    assert expected in done.stderr
    assert not prefix.exists()  # nothing was installed, not even a directory


def test_bundle_holds_what_runs_offline(release):
    bundle = release["offline-a"]
    wheels = {p.name.split("-")[0].lower().replace("_", "-") for p in (bundle / "wheelhouse").glob("*.whl")}
    assert {"django", "paramiko", "daphne", "channels", "cryptography", "python-ldap"} <= wheels
    debs = {p.name.split("_")[0] for p in (bundle / "debs").glob("*.deb")}
    assert {"openssh-server", "openssh-client", "redis-server", "tesseract-ocr-kor", "fonts-nanum", "libpq5"} <= debs
    listed = {line[66:] for line in (bundle / "MANIFEST.sha256").read_text().splitlines()}
    on_disk = {
        p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() and not p.name.startswith("MANIFEST")
    }
    assert listed == on_disk
    assert os.access(bundle / "install.sh", os.X_OK)
