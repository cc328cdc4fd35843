from __future__ import annotations

import pytest

from tests.pg import pg_url  # noqa: F401  (session fixture: a throwaway PostgreSQL cluster)


@pytest.fixture(autouse=True)
def _audit_dirs(settings, tmp_path):
    """Each test gets its own mirror directory and signing key, and small checkpoint intervals."""
    settings.AUDIT_MIRROR_DIR = tmp_path / "mirror"
    settings.AUDIT_SIGNING_KEY_FILE = tmp_path / "keys" / "audit_ed25519.pem"
    settings.AUDIT_CHECKPOINT_EVERY = 10
    return tmp_path


@pytest.fixture
def public_key_file(_audit_dirs, db):
    from audit import signing

    signing.signing_key()  # creates the pair in dev mode
    return _audit_dirs / "keys" / "audit_ed25519.pem.pub"


@pytest.fixture
def chain(db):
    """25 entries across two institutions and two tasks (checkpoints at 10 and 20)."""
    import audit

    entries = []
    for i in range(25):
        inst = "MOEF" if i % 2 else "MOIS"
        entries.append(
            audit.record(
                f"user{i % 3}",
                "test.step",
                task=f"OPS-20260101-00{i % 2 + 1}",
                target=f"was{i}",
                command=f"echo {i}",
                result_code=0,
                output=f"out {i}",
                payload={"institution": inst, "server_group": f"G{i % 4}", "설명": "한글 값"},
            )  # fmt: skip
        )
    return entries
