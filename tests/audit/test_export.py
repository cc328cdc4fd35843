"""Exports carry their checkpoint and a signature over the whole trailer; the offline verifier
catches a one-byte change, any edited trailer field, and an export of a broken chain."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit import exports, offline, signing
from audit.models import AuditEntry


def _export(fmt: str, path, **filters) -> exports.ExportResult:
    with open(path, "wb") as fh:
        return exports.write(fmt, exports.ExportFilter(**filters), fh)


def _flip(path, line_number: int, old: bytes, new: bytes) -> None:
    """Change one byte on one line (1-based)."""
    assert len(old) == len(new) == 1
    lines = path.read_bytes().split(b"\n")
    target = lines[line_number - 1]
    index = target.index(old)
    lines[line_number - 1] = target[:index] + new + target[index + 1 :]
    path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_then_offline_verify_passes_and_one_byte_change_names_the_line(chain, public_key_file, tmp_path, fmt):
    path = tmp_path / f"export.{fmt}"
    result = _export(fmt, path)
    assert (result.count, result.first_seq, result.last_seq) == (25, 1, 25)
    # A covering checkpoint was signed for the tail (the interval ones stop at 20).
    assert result.trailer["checkpoint"]["seq"] == 25

    key = signing.load_public_key(public_key_file)
    check = offline.verify_export(path, key)
    assert check.ok, check.message()
    assert check.entries == 25 and check.checkpoint_seq == 25 and check.chain_ok_at_export

    # Line 8 is the 7th entry (after the header line): change one digit of its target.
    _flip(path, 8, b"6", b"7")
    check = offline.verify_export(path, key)
    assert not check.ok and check.line == 8, check.message()


def test_changed_header_trailer_and_wrong_key_are_caught(chain, public_key_file, tmp_path):
    path = tmp_path / "export.jsonl"
    _export("jsonl", path)
    key = signing.load_public_key(public_key_file)
    original = path.read_bytes()

    _flip(path, 1, b"j", b"J")  # '"export":"jsonl"' in the header
    check = offline.verify_export(path, key)
    assert (check.ok, check.line) == (False, 1)

    path.write_bytes(original.replace(b'"count":25', b'"count":24'))
    check = offline.verify_export(path, key)
    assert check.line == 27 and "trailer signature" in check.problem  # the trailer line

    path.write_bytes(original)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().public_key()
    check = offline.verify_export(path, other)
    assert not check.ok and "signature" in check.problem


def test_filters_by_period_institution_and_task(chain, public_key_file, tmp_path):
    key = signing.load_public_key(public_key_file)
    result = _export("jsonl", tmp_path / "moef.jsonl", institution="MOEF")
    assert result.count == 12
    lines = (tmp_path / "moef.jsonl").read_text(encoding="utf-8").splitlines()[1:-1]
    assert all(json.loads(line)["entry"]["institution"] == "MOEF" for line in lines)
    assert offline.verify_export(tmp_path / "moef.jsonl", key).ok  # gaps between filtered entries are fine

    assert _export("csv", tmp_path / "task.csv", task="OPS-20260101-001").count == 13
    assert offline.verify_export(tmp_path / "task.csv", key).ok

    now = timezone.now()
    assert _export("jsonl", tmp_path / "future.jsonl", since=now + timedelta(days=1)).count == 0
    assert offline.verify_export(tmp_path / "future.jsonl", key).ok
    assert _export("jsonl", tmp_path / "past.jsonl", until=now + timedelta(days=1)).count == 25


def test_csv_rows_render_the_report_table_and_a_column_edit_is_named(chain, public_key_file, tmp_path):
    path = tmp_path / "export.csv"
    _export("csv", path)
    text = path.read_text(encoding="utf-8-sig")
    header, first = text.splitlines()[:2]
    assert header.startswith("seq,time,task,institution,server_group,actor,action,result,prev_hash,entry_hash")
    assert first.startswith("1,") and ",OPS-20260101-001,MOIS,G0,user0,test.step,0," in first
    # Edit only the readable institution column of entry 4 (line 5): the hashed bytes still say MOEF.
    path.write_text(text.replace(",OPS-20260101-002,MOEF,G3,", ",OPS-20260101-002,MOEX,G3,", 1), encoding="utf-8-sig")
    check = offline.verify_export(path, signing.load_public_key(public_key_file))
    assert not check.ok and check.line == 5 and "institution" in check.problem


def test_pdf_export_renders_korean_and_carries_the_signature(chain, tmp_path):
    path = tmp_path / "report.pdf"
    result = _export("pdf", path)
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and b"NanumGothic" in data
    assert result.count == 25 and result.trailer["checkpoint"]["seq"] == 25
    cp_sig = result.trailer["checkpoint"]["signature"]
    assert signing.verify(signing.own_public_key(), result.trailer["signature"],
                          signing.trailer_message(result.trailer))  # fmt: skip
    assert result.trailer["chain"]["ok"] is True and result.trailer["generated_at"].endswith("+09:00")
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "감사 로그 보고서" in text and "무결성 증빙" in text and cp_sig[:20] in text.replace("\n", "")
    assert "시각 (KST, UTC+9)" in text and "+09:00" in text


def _sql(query: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query)


def _offline_cli(path, public_key_file) -> subprocess.CompletedProcess:
    """`python -m audit.offline` in a bare process: no Django importable."""
    return subprocess.run([sys.executable, "-c", "import sys; sys.modules['django'] = None; "
                           "from audit.offline import main; raise SystemExit(main(sys.argv[1:]))",
                           str(path), "--public-key", str(public_key_file)],
                          cwd=settings.BASE_DIR, capture_output=True, text=True, env={"PATH": "/usr/bin"})  # fmt: skip


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_of_a_modified_row_fails_offline_and_names_the_line(chain, public_key_file, tmp_path, fmt):
    _sql("UPDATE \"TB_AUDIT_LOG\" SET target = 'x' WHERE seq = 20")
    path = tmp_path / f"export.{fmt}"
    result = _export(fmt, path)
    assert result.trailer["chain"]["ok"] is False and result.trailer["chain"]["first_broken_seq"] == 20
    if fmt == "jsonl":
        states = [json.loads(line).get("integrity") for line in path.read_text().splitlines()[1:-1]]
        assert states[:19] == ["ok"] * 19 and set(states[19:]) == {"broken"}
    check = offline.verify_export(path, signing.load_public_key(public_key_file))
    # Line 21 holds seq 20 (after the header line): the first entry the export marks broken.
    assert not check.ok and check.line == 21, check.message()
    assert "entry 20 is marked broken" in check.problem and "modified" in check.problem
    run = _offline_cli(path, public_key_file)
    assert run.returncode == 1 and run.stdout.startswith("FAILED line 21: entry 20 is marked broken"), run.stdout
    with pytest.raises(CommandError, match="FAILED line 21"):
        call_command("audit_verify_export", str(path), "--public-key", str(public_key_file))


def test_export_of_a_chain_with_a_deleted_row_fails_at_the_gap(chain, public_key_file, tmp_path):
    _sql('DELETE FROM "TB_AUDIT_LOG" WHERE seq = 7')
    path = tmp_path / "export.jsonl"
    _export("jsonl", path)
    run = _offline_cli(path, public_key_file)
    # seq 1..6 are on lines 2..7; seq 8 follows on line 8.
    assert run.returncode == 1 and run.stdout.startswith("FAILED line 8: seq 8 follows seq 6"), run.stdout


def test_a_line_removed_from_a_good_export_is_named_as_a_gap(chain, public_key_file, tmp_path):
    path = tmp_path / "export.jsonl"
    _export("jsonl", path)
    kept = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(kept[:10] + kept[11:]))  # drop seq 10 (line 11)
    check = offline.verify_export(path, signing.load_public_key(public_key_file))
    # The signed trailer says this export is contiguous, so seq 9 -> 11 is a gap, named at seq 11's line.
    assert not check.ok and check.line == 11 and "seq 11 follows seq 9" in check.problem, check.message()


def test_an_entry_whose_hash_does_not_follow_fails_with_its_line(chain, public_key_file, tmp_path):
    path = tmp_path / "export.jsonl"
    _export("jsonl", path)
    rows = path.read_text().split("\n")
    # Rewrite entry 12 consistently (content and its own hash): it then no longer links to entry 13.
    entry = json.loads(rows[12])
    text = rows[12][rows[12].index('"entry":') + 8 : -1].replace('"was11"', '"was99"')
    digest = hashlib.sha256(text.encode() + entry["prev_hash"].encode()).hexdigest()
    rows[12] = rows[12].replace(entry["entry_hash"], digest).replace('"was11"', '"was99"')
    path.write_text("\n".join(rows))
    run = _offline_cli(path, public_key_file)
    assert run.returncode == 1 and run.stdout.startswith("FAILED line 14: entry 13 does not chain to entry 12"), (
        run.stdout
    )


def _set(trailer: dict, dotted: str, value) -> None:
    *parents, name = dotted.split(".")
    for part in parents:
        trailer = trailer[part]
    trailer[name] = value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chain.ok", False),
        ("chain.first_broken_seq", 3),
        ("chain.kind", "deleted"),
        ("chain.head", 99),  # a field that was not there at all
        ("count", 25.0),
        ("first_seq", 2),
        ("filters.institution", "MOEF"),
        ("contiguous", False),
        ("generated_at", "2026-01-01T09:00:00.000000+09:00"),
        ("key_id", "0" * 16),
        ("checkpoint.time", "2026-01-01T00:00:00.000000Z"),
    ],
)
def test_every_trailer_field_is_signed(chain, public_key_file, tmp_path, field, value):
    path = tmp_path / "export.jsonl"
    _export("jsonl", path)
    key = signing.load_public_key(public_key_file)
    assert offline.verify_export(path, key).ok
    rows = path.read_text().rstrip("\n").split("\n")
    trailer = json.loads(rows[-1])
    _set(trailer, field, value)
    rows[-1] = json.dumps(trailer, separators=(",", ":"), ensure_ascii=False)
    path.write_text("\n".join(rows) + "\n")
    check = offline.verify_export(path, key)
    assert not check.ok and check.line == 27 and "trailer signature does not verify" in check.problem
    run = _offline_cli(path, public_key_file)
    assert run.returncode == 1 and run.stdout.startswith("FAILED line 27"), run.stdout


def test_a_broken_export_cannot_be_passed_off_by_editing_its_chain_block(chain, public_key_file, tmp_path):
    _sql("UPDATE \"TB_AUDIT_LOG\" SET target = 'x' WHERE seq = 25")
    path = tmp_path / "export.jsonl"
    _export("jsonl", path, institution="MOEF")  # seq 25 is MOIS: no entry in this file is marked broken
    key = signing.load_public_key(public_key_file)
    check = offline.verify_export(path, key)
    assert (
        not check.ok
        and check.line == 14
        and "the signed trailer states the chain was broken at seq 25" in (check.problem)
    )
    text = path.read_text()
    path.write_text(text.replace('"ok":false', '"ok":true'))
    check = offline.verify_export(path, key)
    assert not check.ok and "trailer signature does not verify" in check.problem


def test_a_version_1_export_is_refused_with_a_clear_message(chain, public_key_file, tmp_path):
    path = tmp_path / "export.jsonl"
    _export("jsonl", path)
    path.write_text(path.read_text().replace(exports.FORMAT, "guardia-audit-export/1"))
    run = _offline_cli(path, public_key_file)
    assert run.returncode == 1 and run.stdout.startswith("FAILED line 1: export format guardia-audit-export/1 "
                                                         "is refused: its trailer"), run.stdout  # fmt: skip


def test_readable_times_are_kst_with_their_offset_and_the_hashed_form_stays_utc(chain, public_key_file, tmp_path):
    csv_path, jsonl_path = tmp_path / "export.csv", tmp_path / "export.jsonl"
    _export("csv", csv_path)
    result = _export("jsonl", jsonl_path)
    entry = chain[0]
    row = csv_path.read_text(encoding="utf-8-sig").splitlines()[1].split(",")
    assert row[1] == timezone.localtime(entry.created_at, timezone.get_fixed_timezone(540)).isoformat(
        timespec="microseconds"
    ) and row[1].endswith("+09:00")
    assert json.loads(jsonl_path.read_text().splitlines()[1])["entry"]["time"].endswith("Z")  # canonical: UTC
    assert result.trailer["generated_at"].endswith("+09:00")
    assert result.trailer["checkpoint"]["time"].endswith("Z")  # the signed checkpoint message keeps UTC
    # Editing the readable KST time (an hour off) is caught against the hashed UTC time.
    text = csv_path.read_text(encoding="utf-8-sig")
    csv_path.write_text(text.replace(row[1], row[1].replace("+09:00", "+08:00"), 1), encoding="utf-8-sig")
    check = offline.verify_export(csv_path, signing.load_public_key(public_key_file))
    assert not check.ok and check.line == 2 and "time" in check.problem


def test_verify_export_command_needs_no_database(chain, public_key_file, tmp_path):
    path = tmp_path / "export.jsonl"
    call_command("audit_export", str(path), "--format", "jsonl", "--institution", "MOIS")
    out = io.StringIO()
    call_command("audit_verify_export", str(path), "--public-key", str(public_key_file), stdout=out)
    assert out.getvalue().startswith("OK: 13 entries")
    with pytest.raises(CommandError, match="cannot read the public key"):
        call_command("audit_verify_export", str(path), "--public-key", str(path))
    # And the same check in a bare Python process without Django or any database settings.
    run = _offline_cli(path, public_key_file)
    assert run.returncode == 0 and run.stdout.startswith("OK: 13 entries"), run.stdout + run.stderr
    _flip(path, 3, b"1", b"2")
    run = _offline_cli(path, public_key_file)
    assert run.returncode == 1 and run.stdout.startswith("FAILED line 3"), run.stdout + run.stderr
    assert AuditEntry.objects.filter(action="test.step").count() == 25
