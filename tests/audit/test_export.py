"""Exports carry their checkpoint and signature; the offline verifier catches a one-byte change."""

from __future__ import annotations

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
    assert offline.verify_export(path, key).line == 27  # the trailer line

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
                          signing.export_message(result.trailer["rows_sha256"], cp_sig))  # fmt: skip
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "감사 로그 보고서" in text and "무결성 증빙" in text and cp_sig[:20] in text.replace("\n", "")


def test_export_marks_entries_after_a_break_as_broken(chain, public_key_file, tmp_path):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute('UPDATE "TB_AUDIT_LOG" SET target = \'x\' WHERE seq = 20')
    path = tmp_path / "export.jsonl"
    _export("jsonl", path)
    states = [json.loads(line).get("integrity") for line in path.read_text().splitlines()[1:-1]]
    assert states[:19] == ["ok"] * 19 and set(states[19:]) == {"broken"}
    check = offline.verify_export(path, signing.load_public_key(public_key_file))
    assert check.ok and check.chain_ok_at_export is False  # the file is authentic; it says the chain broke


def test_verify_export_command_needs_no_database(chain, public_key_file, tmp_path):
    path = tmp_path / "export.jsonl"
    call_command("audit_export", str(path), "--format", "jsonl", "--institution", "MOIS")
    out = io.StringIO()
    call_command("audit_verify_export", str(path), "--public-key", str(public_key_file), stdout=out)
    assert out.getvalue().startswith("OK: 13 entries")
    with pytest.raises(CommandError, match="cannot read the public key"):
        call_command("audit_verify_export", str(path), "--public-key", str(path))
    # And the same check in a bare Python process without Django or any database settings.
    _flip(path, 3, b"1", b"2")
    run = subprocess.run([sys.executable, "-c", "import sys; sys.modules['django'] = None; "
                          "from audit.offline import main; raise SystemExit(main(sys.argv[1:]))",
                          str(path), "--public-key", str(public_key_file)],
                         cwd=settings.BASE_DIR, capture_output=True, text=True, env={"PATH": "/usr/bin"})  # fmt: skip
    assert run.returncode == 1 and run.stdout.startswith("FAILED line 3"), run.stdout + run.stderr
    assert AuditEntry.objects.filter(action="test.step").count() == 25
