"""Exports leave the web process in bounded memory under ASGI (the stack Daphne serves).

Django serves a synchronous streaming iterator under ASGI by reading it whole into a list
first. CSV and JSON Lines exports are sent as they are written, through the response's
async iterator, one block at a time; a PDF is spooled and its file read block by block.
"""

from __future__ import annotations

import asyncio
import tempfile
import tracemalloc
import warnings

import pytest
from asgiref.sync import async_to_sync
from django.core import signals
from django.db import close_old_connections

from audit import offline, signing
from audit.models import AuditCheckpoint, AuditEntry
from audit.views import ExportStream, SpooledFileResponse
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


async def _asgi_get(path: str, query: str, cookie: str, leave_after: int = 0) -> tuple[int, dict, list[bytes]]:
    """GET through Django's ASGI application; ``leave_after`` > 0 disconnects once that many
    body blocks have arrived, as a client that goes away does."""
    from guardia.asgi import application

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    sent: list[dict] = []
    requested = False
    gone = asyncio.Event()

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()  # the client stays connected unless it leaves; Django cancels this when done
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if leave_after and sum(m["type"] == "http.response.body" for m in sent) >= leave_after:
            gone.set()
            await asyncio.sleep(0.5)  # the client is gone: the server notices before sending more

    # As Django's own test client does: the request must not close the test's database
    # connection (the test's transaction holds the data it reads).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        await application(scope, receive, send)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, [m.get("body", b"") for m in sent if m["type"] == "http.response.body"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_over_asgi_streams_in_blocks_and_verifies_offline(
    fmt, client, chain, public_key_file, roles, tmp_path
):
    """Served by Django's ASGI handler (what Daphne runs): several blocks of at most 64 KiB,
    the first sent while rows were still to be read, the whole verifying offline, and the
    export audited with its count once the last block has gone."""
    _more(400)  # several blocks' worth
    auditor = UserFactory(username="auditor7", role="auditor")
    client.force_login(auditor)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    entries = AuditEntry.objects.count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, headers, bodies = async_to_sync(_asgi_get)("/audit/export/", f"format={fmt}", cookie)
    assert status == 200 and headers["content-type"].startswith(("application/x-ndjson", "text/csv"))
    assert headers["content-disposition"].startswith("attachment; filename=")
    assert not [w for w in caught if "consume" in str(w.message) and "iterators" in str(w.message)]
    body = b"".join(bodies)
    assert len(bodies) > 3 and all(len(b) <= 64 * 1024 for b in bodies)
    assert bodies[0].startswith(b"\xef\xbb\xbfseq," if fmt == "csv" else b'{"type":"header"')
    trailer = b"#trailer" if fmt == "csv" else b'"type":"trailer"'
    sent = [b for b in bodies if b]
    assert trailer not in b"".join(sent[:-2]) and trailer in sent[-1] + sent[-2]
    path = tmp_path / f"served.{fmt}"
    path.write_bytes(body)
    check = offline.verify_export(path, signing.load_public_key(public_key_file))
    assert check.ok, check.problem
    assert check.entries == entries >= len(chain) + 400
    run = AuditEntry.objects.filter(action="audit.export").get()
    assert (run.actor, run.payload["count"], run.payload["complete"]) == ("auditor7", entries, True)


def test_a_client_that_stops_reading_leaves_an_audited_partial_export(client, chain, roles):
    """A client that disconnects after the first block over ASGI ends the export there, and
    the export is audited as it went: complete false, the rows written so far."""
    _more(400)
    client.force_login(UserFactory(username="auditor8", role="auditor"))
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    status, _, bodies = async_to_sync(_asgi_get)("/audit/export/", "format=jsonl", cookie, leave_after=1)
    assert status == 200 and bodies[0].startswith(b'{"type":"header"') and len(bodies) == 1
    run = AuditEntry.objects.filter(action="audit.export").get()
    assert run.payload["complete"] is False and 0 < run.payload["count"] < AuditEntry.objects.count() - 1


def test_the_streamed_export_holds_one_block_at_a_time():
    """24 MB of blocks through ExportStream's async iterator: the peak stays near one block
    (Django's fallback for a synchronous iterator would list all 24 MB first)."""
    block = bytes(range(256)) * 256  # 64 KiB, made afresh for every block
    count = 24 * 16

    def blocks():
        for _ in range(count):
            yield bytearray(block)

    response = ExportStream(blocks(), content_type="application/octet-stream")

    async def drain() -> int:
        total = 0
        async for chunk in response:
            total += len(chunk)
        return total

    tracemalloc.start()
    try:
        total = async_to_sync(drain)()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        response.close()
    assert total == count * len(block)
    assert peak < 2 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while streaming {total / 1e6:.0f} MB"


def test_the_asgi_side_holds_one_block_at_a_time():
    """A 24 MB file served through the response's async iterator: the memory peak stays
    near one block (a list of every block, Django's fallback, would hold all 24 MB)."""
    size = 24 * 1024 * 1024
    spool = tempfile.TemporaryFile()
    block = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(size // len(block)):
        spool.write(block)
    spool.seek(0)
    response = SpooledFileResponse(spool, content_type="application/octet-stream")

    async def drain() -> tuple[int, int]:
        total, chunks = 0, 0
        async for chunk in response:
            total += len(chunk)
            chunks += 1
        return total, chunks

    tracemalloc.start()
    try:
        total, chunks = async_to_sync(drain)()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        response.close()
    assert total == size and chunks == size // SpooledFileResponse.block_size
    assert peak < 2 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while streaming {size / 1e6:.0f} MB"


LOG = '"TB_AUDIT_LOG"'


def _more(count: int) -> None:
    import audit

    for i in range(count):
        audit.record("user9", "test.more", target=f"was{i}", payload={"institution": "MOEF"})


def test_export_verification_resumes_at_the_latest_signed_checkpoint(chain, public_key_file, tmp_path):
    from audit import exports, services
    from audit.verify import verify_chain

    # No verification has run yet: the walk still starts at the latest signed checkpoint.
    assert not AuditEntry.objects.filter(action="audit.verify").exists()
    first = verify_chain(resume=True)  # head 25; checkpoints at 10 and 20
    assert first.ok and first.from_seq == 20 and first.entries == 5
    assert services.run_verification("auditor", source="console").ok
    _more(12)
    head = AuditEntry.objects.count()
    last_checkpoint = AuditCheckpoint.objects.order_by("-seq").values_list("seq", flat=True).first()
    resumed, whole = verify_chain(resume=True), verify_chain()
    assert resumed.ok and resumed.from_seq == last_checkpoint and resumed.entries == head - last_checkpoint
    assert whole.ok and whole.from_seq == 0 and whole.entries == head

    path = tmp_path / "export.jsonl"
    with open(path, "wb") as fh:
        result = exports.write("jsonl", exports.ExportFilter(), fh)
    assert result.trailer["chain"]["from_seq"] == last_checkpoint and result.trailer["chain"]["ok"]
    assert offline.verify_export(path, signing.load_public_key(public_key_file)).ok


@pytest.mark.parametrize("verified_before", [True, False])
def test_a_break_after_the_anchor_is_placed_by_a_walk_from_seq_1(chain, verified_before):
    from django.db import connection

    from audit import services
    from audit.verify import verify_chain

    if verified_before:
        assert services.run_verification("auditor", source="console").ok
    _more(12)
    anchor = AuditCheckpoint.objects.order_by("-seq").values_list("seq", flat=True).first()
    edited = anchor + 2  # after the checkpoint a resumed walk starts at
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {LOG} SET command = 'rm -rf /' WHERE seq = %s", [edited])
    report = verify_chain(resume=True)
    assert (report.ok, report.first_broken_seq, report.kind, report.from_seq) == (False, edited, "modified", 0)


def test_a_later_whole_chain_run_is_what_catches_an_edit_before_the_anchor(chain):
    """The limit of resuming, stated: an edit below the anchor after the last whole-chain run
    is not re-read by an export's check (its trailer says from_seq), the scheduled run sees it."""
    from django.db import connection

    from audit import services
    from audit.verify import verify_chain

    assert services.run_verification("auditor", source="console").ok
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {LOG} SET command = 'rm -rf /' WHERE seq = 7")
    assert verify_chain(resume=True).ok and verify_chain(resume=True).from_seq == 20
    report = services.run_verification("auditor", source="schedule")
    assert (report.ok, report.first_broken_seq) == (False, 7)
    assert verify_chain(resume=True).from_seq == 0  # the last run failed: nothing to resume from
