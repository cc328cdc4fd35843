"""OCR of error-screen photos: generated images (several Korean fonts, a skewed one, a
low-contrast one, a dark terminal) read by the real Tesseract, mapped to the right server;
and photos that are not photos, refused with a clear error and nothing stored."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image, ImageDraw, ImageFont

from intake import ocr
from intake.catalog import Catalog
from intake.parser import parse

DATA = Path(__file__).resolve().parent.parent / "data"
FONTS = Path("/usr/share/fonts/truetype/nanum")
NOW = dt.datetime(2026, 5, 23, 9, 0, tzinfo=ZoneInfo("Asia/Seoul"))

pytestmark = pytest.mark.skipif(not (FONTS / "NanumGothic.ttf").exists(), reason="fonts-nanum is not installed")


def screen(
    lines: list[str],
    font: str = "NanumGothic.ttf",
    size: int = 28,
    angle: float = 0,
    fg=(0, 0, 0),
    bg=(255, 255, 255),
    fmt: str = "PNG",
) -> bytes:
    face = ImageFont.truetype(str(FONTS / font), size)
    image = Image.new("RGB", (1000, 60 + len(lines) * int(size * 1.6)), bg)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((30, 30 + index * int(size * 1.6)), line, font=face, fill=fg)
    if angle:
        image = image.rotate(angle, expand=True, fillcolor=bg)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_dict(json.loads((DATA / "intake_cmdb.json").read_text(encoding="utf-8")))


@pytest.mark.parametrize(
    "lines, style, server, code, sub_type",
    [
        (
            ["[나이스] neis-was02 서버 오류", "java.lang.OutOfMemoryError: Java heap space"],
            {},
            "neis-was02",
            "java.lang.OutOfMemoryError",
            "MEMORY_CHECK",
        ),
        (
            ["정부24 gov24-was03 HTTP 500 Internal Server Error", "NullPointerException at kr.go.gov24.Main"],
            {"font": "NanumMyeongjo.ttf"},
            "gov24-was03",
            "HTTP 500",
            "LOG_MINING",
        ),
        (
            ["예산시스템 bgt-was01 ORA-01555: snapshot too old"],
            {"font": "NanumBarunGothic.ttf", "angle": 5},
            "bgt-was01",
            "ORA-01555",
            None,
        ),
        (
            ["행복이음 hb-was02 오류 발생", "java.sql.SQLException: Connection refused"],
            {"fg": (120, 120, 120), "bg": (165, 165, 165)},
            "hb-was02",
            "java.sql.SQLException",
            "LOG_MINING",
        ),
        (
            ["날씨누리 wn-was01 503 Service Unavailable"],
            {"font": "NanumSquareR.ttf", "fg": (230, 230, 230), "bg": (20, 20, 30), "fmt": "JPEG"},
            "wn-was01",
            "503 Service Unavailable",
            None,
        ),
    ],
    ids=["gothic", "myeongjo", "skewed", "low-contrast", "dark-jpeg"],
)
def test_an_error_screen_maps_to_its_server(catalog, lines, style, server, code, sub_type):
    result = ocr.read_photo(screen(lines, **style))
    assert code in result["error_codes"]
    parsed = parse(result["text"], catalog, now=NOW)
    assert parsed.servers == [server]
    if sub_type:
        assert parsed.sub_type == sub_type


@pytest.mark.parametrize(
    "payload, message",
    [
        ("", "empty"),
        ("not base64 at all!!", "base64"),
        (base64.b64encode(b"%PDF-1.4 this is a document, not a photo").decode(), "not an image"),
        ("data:text/plain;base64," + base64.b64encode(b"hello").decode(), "base64 image"),
    ],
)
def test_what_is_not_a_photo_is_refused(payload, message):
    with pytest.raises(ocr.PhotoError, match=message):
        ocr.open_image(ocr.decode_photo(payload, 10 * 1024 * 1024))


def test_an_oversize_photo_is_refused_before_decoding():
    with pytest.raises(ocr.PhotoError, match="larger than"):
        ocr.decode_photo("A" * (2 * 1024 * 1024), 1024 * 1024)
