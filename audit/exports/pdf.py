"""The PDF export: the report table drawn straight onto the canvas.

Measured while building it: one reportlab LongTable of 100,000 rows did not finish in
6.5 minutes and chunked platypus tables took ~22 s and 380 MB, while drawing on the canvas
took ~12 s; so rows are drawn directly, page by page, in constant memory. Korean text uses
the NanumGothic TTF (embedded as a subset). Times are KST (+09:00), as in the console. The
last page carries the covering checkpoint, the chain verdict at export time, rows_sha256
(entry hashes and integrity states of its rows, the same value the JSON Lines export of the
same filter carries) and the Ed25519 signature over the whole trailer (docs/audit.md).
"""

from __future__ import annotations

import hashlib
from typing import IO, Any

from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from .. import canonical as canon
from .. import lines
from .base import Exporter, ExportFilter, ExportResult, Row, rows_line

FONT_DIR = "/usr/share/fonts/truetype/nanum/"
FONT, FONT_BOLD = "NanumGothic", "NanumGothicBold"
# (title, x offset in points, max characters)
COLUMNS = [
    ("seq", 0, 10), ("시각 (KST, UTC+9)", 52, 27), ("작업", 172, 20), ("기관", 262, 12), ("서버 그룹", 318, 12),
    ("행위", 374, 26), ("결과", 494, 12), ("이전 해시 → 해시", 548, 40), ("무결성", 738, 10),
]  # fmt: skip
ROW_HEIGHT, FONT_SIZE, MARGIN = 11, 7, 28
INTEGRITY_KO = {"ok": "정상", "broken": "손상", "unverified": "미검증"}


def _register_fonts() -> None:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT, FONT_DIR + "NanumGothic.ttf"))
        pdfmetrics.registerFont(TTFont(FONT_BOLD, FONT_DIR + "NanumGothicBold.ttf"))


def _kst_cell(utc_text: str) -> str:
    """`2026-11-30 09:00:00 +09:00`: the table column is narrow, so seconds precision."""
    text = lines.kst_text(utc_text)
    return f"{text[:10]} {text[11:19]} {text[-6:]}"


def _cut(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


class PdfExporter(Exporter):
    format = "pdf"

    def __init__(self, flt: ExportFilter, target: IO[bytes]):
        super().__init__(flt, target)
        _register_fonts()
        self.width, self.height = landscape(A4)
        self.pdf = canvas.Canvas(target, pagesize=(self.width, self.height), pageCompression=1)
        self.pdf.setTitle("GUARDiA 감사 보고서")
        self.filters = ", ".join(f"{k}={v}" for k, v in flt.as_dict().items() if v) or "전체"
        self.page = 0
        self.y = 0.0
        self.rows_digest = hashlib.sha256()

    def _new_page(self) -> None:
        pdf = self.pdf
        if self.page:
            pdf.showPage()
        self.page += 1
        pdf.setFont(FONT_BOLD, 11)
        pdf.drawString(MARGIN, self.height - MARGIN, f"GUARDiA 감사 로그 보고서 (TB_AUDIT_LOG) — 조건: {self.filters}")
        pdf.setFont(FONT, 7)
        pdf.drawRightString(self.width - MARGIN, self.height - MARGIN, f"{self.page} 페이지")
        pdf.setFont(FONT_BOLD, FONT_SIZE)
        top = self.height - MARGIN - 18
        for title, x, _ in COLUMNS:
            pdf.drawString(MARGIN + x, top, title)
        pdf.setFont(FONT, FONT_SIZE)
        self.y = top - ROW_HEIGHT

    def start(self) -> None:
        self._new_page()

    def entry(self, row: Row) -> None:
        self.rows_digest.update(rows_line(row.entry_hash, row.integrity))
        entry = canon.parse(row.canonical)
        cells = [
            str(row.seq), _kst_cell(entry["time"]), entry["task"], entry["institution"],
            str(entry["payload"].get("server_group", "")), entry["action"], entry["result_code"],
            f"{row.prev_hash[:16]}… → {row.entry_hash[:16]}…", INTEGRITY_KO.get(row.integrity, row.integrity),
        ]  # fmt: skip
        if self.y < MARGIN:
            self._new_page()
        for (_, x, limit), value in zip(COLUMNS, cells, strict=True):
            self.pdf.drawString(MARGIN + x, self.y, _cut(value, limit))
        self.y -= ROW_HEIGHT

    def digest(self) -> tuple[str, str, dict[str, Any]]:
        return "rows_sha256", self.rows_digest.hexdigest(), {}

    def finish(self, result: ExportResult) -> None:
        """The last page: the evidence that the table is the chain as it was signed."""
        pdf, trailer = self.pdf, result.trailer
        cp = self.meta["checkpoint"] or {}
        chain = self.meta["chain"]
        state = "정상" if chain["ok"] else f"손상 — seq {chain['first_broken_seq']} ({chain['kind']})"
        facts = [
            f"생성 시각: {trailer['generated_at']}",
            f"항목 수: {result.count}  (seq {result.first_seq} ~ {result.last_seq})",
            f"체인 검증 결과(내보내기 시점): {state}",
            f"체크포인트 seq: {cp.get('seq', '-')}   시각(UTC, 서명된 값): {cp.get('time', '-')}",
            f"체크포인트 키 ID: {cp.get('key_id', '-')}",
            f"체크포인트 해시: {cp.get('entry_hash', '-')}",
            f"체크포인트 서명: {cp.get('signature', '-')}",
            *([f"기관별 하위 체인 머클 루트 (서명에 포함): {cp['merkle_root']}"] if cp.get("merkle_root") else []),
            f"rows_sha256 (같은 조건의 JSON Lines 내보내기와 동일): {trailer['rows_sha256']}",
            f"보고서 서명 (Ed25519, 키 ID {trailer['key_id']}, 트레일러 전체에 대한 서명): {trailer['signature']}",
        ]
        pdf.showPage()
        pdf.setFont(FONT_BOLD, 11)
        y = self.height - MARGIN
        pdf.drawString(MARGIN, y, "무결성 증빙 (서명된 체크포인트)")
        pdf.setFont(FONT, 8)
        for line in facts:
            y -= 14
            pdf.drawString(MARGIN, y, line)
        pdf.save()
