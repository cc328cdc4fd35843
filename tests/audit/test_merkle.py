"""Stretch item 7: institution sub-chains, the Merkle root in each checkpoint, inclusion proofs."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from rest_framework.authtoken.models import Token

import audit
from audit import canonical, exports, merkle, offline, proof_check, proofs, services, signing
from audit.models import AuditCheckpoint, AuditEntry
from audit.verify import verify_chain
from tests.factories import UserFactory

LOG, CP = '"TB_AUDIT_LOG"', '"TB_AUDIT_CHECKPOINT"'
TASK = "OPS-20260101-002"  # the MOEF entries of the chain fixture (odd seqs 2..24)


def sql(query: str, params=()) -> list:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def wide_chain(chain):
    """The fixture chain plus five more institutions, so Merkle paths have several steps."""
    for i in range(5):
        audit.record("ops", "test.other", task=f"OPS-X-{i}", payload={"institution": f"INST{i}"})
    audit.record(None, "system.tick")  # no institution: the "" sub-chain
    return chain


def _expected_leaves(up_to: int) -> list[merkle.Leaf]:
    state = merkle.SubChains()
    for inst, digest in (
        AuditEntry.objects.filter(seq__lte=up_to).order_by("seq").values_list("institution", "entry_hash")
    ):
        state.add(inst, digest)
    return state.leaves()


def test_merkle_paths_lead_to_the_root_for_every_size_and_index():
    for n in range(1, 12):
        leaves = [(f"I{i:02d}", i + 1, f"{i:064x}") for i in range(n)]
        root = merkle.root(leaves)
        for index in range(n):
            path = merkle.audit_path(leaves, index)
            assert merkle.root_from_path(merkle.leaf_hash(*leaves[index]), path) == root
            assert len(path) <= (n - 1).bit_length()
            if n > 1:  # another leaf does not fit this path
                other = merkle.leaf_hash(*leaves[(index + 1) % n])
                assert merkle.root_from_path(other, path) != root
    assert merkle.sub_hash("a" * 64, merkle.GENESIS) == canonical.chain_hash(b"a" * 64, merkle.GENESIS)


def test_checkpoints_sign_the_root_over_the_sub_chain_heads(
    wide_chain, public_key_file, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # the mirror is written after commit
        services.create_checkpoint("manual")
    cps = list(AuditCheckpoint.objects.order_by("seq"))
    assert [c.seq for c in cps] == [10, 20, 30, 31] and all(c.merkle_root for c in cps)
    key = signing.load_public_key(public_key_file)
    for cp in cps:
        leaves = merkle.parse_leaves(cp.leaves)
        assert leaves == _expected_leaves(cp.seq) and merkle.root(leaves) == cp.merkle_root
        message = signing.checkpoint_message(cp.seq, cp.entry_hash, canonical.time_text(cp.created_at), cp.merkle_root)
        assert signing.verify(key, cp.signature, message)
    names = [leaf[0] for leaf in merkle.parse_leaves(cps[-1].leaves)]
    assert names == ["", "INST0", "INST1", "INST2", "INST3", "INST4", "MOEF", "MOIS"]
    assert sum(leaf[1] for leaf in merkle.parse_leaves(cps[-1].leaves)) == 31  # every entry in one sub-chain
    mirrored = "".join(p.read_text() for p in sorted((settings.AUDIT_MIRROR_DIR).glob("*.jsonl")))
    assert f'"merkle_root":"{cps[-1].merkle_root}"' in mirrored
    report = verify_chain()
    assert report.ok and report.checkpoints == 4, report.message()


def test_proof_verifies_offline_by_command_and_without_django(wide_chain, public_key_file, tmp_path, capsys):
    out = tmp_path / "proof.json"
    call_command("audit_prove", TASK, "--out", str(out))
    proof = json.loads(out.read_text())
    assert proof["entries"] == list(range(2, 25, 2))
    (sub,) = proof["subchains"]
    assert sub["institution"] == "MOEF" and sub["start_count"] == 0 and sub["count"] == 12
    assert len(sub["path"]) == 3  # 8 leaves
    assert AuditEntry.objects.filter(action="audit.proof").count() == 1  # handing out a proof is audited
    capsys.readouterr()
    call_command("audit_verify_proof", str(out), "--public-key", str(public_key_file))
    assert capsys.readouterr().out.startswith("OK: 12 entries of task OPS-20260101-002")
    out.write_text(out.read_text().replace("echo 3", "echo 4"))  # one byte of entry seq 4
    with pytest.raises(CommandError, match="FAILED: entry seq 4: its canonical bytes do not hash"):
        call_command("audit_verify_proof", str(out), "--public-key", str(public_key_file))
    out.write_text(out.read_text().replace("echo 4", "echo 3"))
    run = subprocess.run([sys.executable, "-c", "import sys; sys.modules['django'] = None; "
                          "from audit.offline import main; raise SystemExit(main(sys.argv[1:]))",
                          str(out), "--public-key", str(public_key_file)],
                         cwd=settings.BASE_DIR, capture_output=True, text=True, env={"PATH": "/usr/bin"})  # fmt: skip
    assert run.returncode == 0 and run.stdout.startswith("OK: 12 entries"), run.stdout + run.stderr


def _flip(text: str, at: int) -> str:
    """Change one character (one byte: all flipped characters are ASCII)."""
    old = text[at]
    new = "0" if old != "0" else "1"
    return text[:at] + new + text[at + 1 :]


def test_one_byte_change_in_an_entry_or_the_path_fails_and_is_named(wide_chain, public_key_file):
    key = signing.load_public_key(public_key_file)
    # A proof of a task whose institution sub-chain also holds another task's entry (shown by hash only).
    audit.record("ops", "test.more", task="OPS-Y", payload={"institution": "MOEF"})
    audit.record("ops", "test.last", task=TASK, payload={"institution": "MOEF"})
    proof = proofs.build_proof(TASK)
    assert proof_check.check_proof(proof, key).ok
    assert proof["entries"] == [*range(2, 25, 2), 33] and proof["checkpoint"]["seq"] == 33
    sub_index = 0
    segment = proof["subchains"][sub_index]["segment"]
    hidden = [i for i, item in enumerate(segment) if "canonical" not in item]
    assert hidden, "the segment should contain another task's entry"

    for i, item in enumerate(segment):
        if "canonical" in item:
            for field, at in (("canonical", item["canonical"].index('"command"') + 12), ("prev_hash", 5),
                              ("entry_hash", 63)):  # fmt: skip
                bad = copy.deepcopy(proof)
                target = bad["subchains"][sub_index]["segment"][i]
                target[field] = _flip(target[field], at)
                check = proof_check.check_proof(bad, key)
                assert not check.ok and f"entry seq {item['seq']}" in check.problem, (field, check.problem)
        else:
            bad = copy.deepcopy(proof)
            target = bad["subchains"][sub_index]["segment"][i]
            target["entry_hash"] = _flip(target["entry_hash"], 10)
            check = proof_check.check_proof(bad, key)
            assert not check.ok and "institution 'MOEF'" in check.problem and "head" in check.problem

    for step in range(len(proof["subchains"][sub_index]["path"])):
        bad = copy.deepcopy(proof)
        bad["subchains"][sub_index]["path"][step]["hash"] = _flip(bad["subchains"][sub_index]["path"][step]["hash"], 0)
        check = proof_check.check_proof(bad, key)
        assert not check.ok and "Merkle path does not lead to the signed root" in check.problem, check.problem
        bad = copy.deepcopy(proof)
        bad["subchains"][sub_index]["path"][step]["side"] = (
            "L" if proof["subchains"][0]["path"][step]["side"] == "R" else "R"
        )
        assert "Merkle path" in proof_check.check_proof(bad, key).problem

    for field in ("merkle_root", "entry_hash"):
        bad = copy.deepcopy(proof)
        bad["checkpoint"][field] = _flip(bad["checkpoint"][field], 3)
        check = proof_check.check_proof(bad, key)
        assert not check.ok and ("signature does not verify" in check.problem or "root" in check.problem)
    bad = copy.deepcopy(proof)
    bad["entries"] = bad["entries"][:-1]
    assert "lists entries" in proof_check.check_proof(bad, key).problem
    bad = copy.deepcopy(proof)
    bad["checkpoint"].pop("merkle_root")
    assert "no Merkle root" in proof_check.check_proof(bad, key).problem


def test_modified_entry_of_an_institution_names_its_sub_chain(chain):
    sql(f"UPDATE {LOG} SET command = 'rm -rf /' WHERE seq = 7")  # seq 7 is a MOIS entry
    report = verify_chain()
    assert (report.ok, report.first_broken_seq, report.kind, report.institutions) == (False, 7, "modified", ["MOIS"])
    assert "sub-chain of institution 'MOIS'" in report.message()


def test_replaced_entry_with_recomputed_hash_names_only_its_sub_chain(chain):
    # Replace MOEF entry 8 and recompute its own hash: the global link to 9 breaks, and only
    # MOEF's sub-chain fails to reach the leaves signed at seq 10.
    row = AuditEntry.objects.get(seq=8)
    text = row.canonical.replace('"command":"echo 7"', '"command":"echo X"')
    digest = canonical.chain_hash(text.encode(), row.prev_hash)
    sql(f"UPDATE {LOG} SET command = 'echo X', canonical = %s, entry_hash = %s WHERE seq = 8", [text, digest])
    report = verify_chain()
    assert (report.kind, report.institutions) == ("inserted", ["MOEF"]), report.message()


def test_deleted_entry_names_its_sub_chain(chain):
    sql(f"DELETE FROM {LOG} WHERE seq = 13")  # MOIS
    report = verify_chain()
    assert (report.first_broken_seq, report.kind, report.institutions) == (13, "deleted", ["MOIS"])


def test_signed_leaves_that_disagree_with_the_entries_are_named(chain):
    """A checkpoint whose signed leaves differ from the recomputed heads (e.g. signed from a
    tampered column) is reported as a diverged sub-chain, naming the institution."""
    entry = AuditEntry.objects.get(seq=25)
    leaves = [(inst, count + (1 if inst == "MOEF" else 0), head) for inst, count, head in _expected_leaves(25)]
    root = merkle.root(leaves)
    kid, sig = signing.sign(signing.checkpoint_message(25, entry.entry_hash, canonical.time_text(entry.created_at),
                                                       root))  # fmt: skip
    AuditCheckpoint(seq=25, entry_hash=entry.entry_hash, created_at=entry.created_at, key_id=kid, signature=sig,
                    merkle_root=root, leaves=merkle.leaves_text(leaves)).save()  # fmt: skip
    report = verify_chain()
    assert (report.first_broken_seq, report.kind, report.institutions) == (25, "subchain_diverged", ["MOEF"])


def test_leaves_and_root_are_bound_by_the_signature(chain):
    sql(f"UPDATE {CP} SET leaves = REPLACE(leaves, '[\"MOEF\",5,', '[\"MOEF\",6,') WHERE seq = 10")
    report = verify_chain()
    assert (report.first_broken_seq, report.kind) == (10, "checkpoint_forged") and "leaves" in report.detail
    sql(f"UPDATE {CP} SET merkle_root = '' WHERE seq = 20")  # stripping the root: back to a v1 message
    report = verify_chain()
    assert (report.first_broken_seq, report.kind) == (10, "checkpoint_forged")
    sql(f"UPDATE {CP} SET leaves = REPLACE(leaves, '[\"MOEF\",6,', '[\"MOEF\",5,') WHERE seq = 10")
    report = verify_chain()
    assert (report.first_broken_seq, report.kind) == (20, "checkpoint_forged") and "invalid signature" in report.detail


def _v1_checkpoint(seq: int) -> None:
    entry = AuditEntry.objects.get(seq=seq)
    time = canonical.time_text(entry.created_at)
    kid, sig = signing.sign(signing.checkpoint_message(seq, entry.entry_hash, time))
    AuditCheckpoint(seq=seq, entry_hash=entry.entry_hash, created_at=entry.created_at, key_id=kid, signature=sig,
                    reason="interval").save()  # fmt: skip


def test_old_format_checkpoints_still_verify_beside_new_ones(settings, db, public_key_file, tmp_path):
    settings.AUDIT_CHECKPOINT_EVERY = 10**9  # no interval checkpoints: the old ones are written by hand
    for i in range(30):
        audit.record("ops", "test.step", task="OPS-OLD", command=f"echo {i}", payload={"institution": "MOIS"})
    for seq in (10, 20, 30):
        _v1_checkpoint(seq)
    assert verify_chain().ok  # version 1 only
    # An export covered by an old checkpoint keeps the old layout and verifies offline.
    path = tmp_path / "old.jsonl"
    with open(path, "wb") as fh:
        result = exports.write("jsonl", exports.ExportFilter(task="OPS-OLD"), fh)
    assert result.trailer["checkpoint"]["seq"] == 30 and "merkle_root" not in result.trailer["checkpoint"]
    # The first version 2 checkpoint after the upgrade rebuilds the heads from the first entry.
    cp = services.create_checkpoint("manual")
    assert cp.merkle_root and merkle.parse_leaves(cp.leaves) == _expected_leaves(cp.seq)
    report = verify_chain()
    assert report.ok and report.checkpoints == AuditCheckpoint.objects.count() == 4, report.message()
    key = signing.load_public_key(public_key_file)
    assert offline.verify_export(path, key).ok
    proof = proofs.build_proof("OPS-OLD")
    assert proof["checkpoint"]["seq"] == cp.seq and proof_check.check_proof(proof, key).ok
    # An old checkpoint given a root afterwards no longer verifies.
    sql(f"UPDATE {CP} SET merkle_root = %s WHERE seq = 10", [cp.merkle_root])
    assert verify_chain().kind == "checkpoint_forged"


def test_rest_proof_for_auditors(client, chain, roles, public_key_file):
    auditor = UserFactory(username="auditor1", role="auditor")
    headers = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=auditor).key}"}
    response = client.get(f"/api/v1/audit/proof/{TASK}", **headers)
    assert response.status_code == 200
    check = proof_check.check_proof(response.json(), signing.load_public_key(public_key_file))
    assert check.ok and check.entries == list(range(2, 25, 2)), check.message()
    missing = client.get("/api/v1/audit/proof/OPS-NONE", **headers)
    assert missing.status_code == 404 and "no audit entries" in missing.json()["detail"]
    other = Token.objects.create(user=UserFactory(username="dev1", role="site_manager"))
    assert client.get(f"/api/v1/audit/proof/{TASK}", HTTP_AUTHORIZATION=f"Token {other.key}").status_code == 403


def test_prove_command_rejects_an_unknown_task(db, tmp_path):
    with pytest.raises(CommandError, match="no audit entries"):
        call_command("audit_prove", "OPS-NONE", "--out", str(tmp_path / "p.json"))
    assert not (tmp_path / "p.json").exists()
