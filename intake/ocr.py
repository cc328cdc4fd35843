"""A photo of an error screen -> text, error codes, and a suggested server and task.

Tesseract (Debian's tesseract-ocr with the Korean data, offline) reads the photo after
it is turned to grey, deskewed and thresholded. "kor+eng" keeps Latin text readable
("kor" alone wrecks it); the result is matched fuzzily, never exactly, because short
Korean words next to Latin text are sometimes misread.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

from PIL import Image, ImageOps, UnidentifiedImageError

ERROR_CODES = re.compile(
    r"\bORA-\d{5}\b|\bHTTP\s*(?:/1\.[01]\s*)?5\d\d\b"
    r"|\b5\d\d\s+(?:Internal Server Error|Bad Gateway|Service Unavailable|Gateway Time-?out)\b"
    r"|\b(?:java|javax|jakarta|org|com)\.[\w.]+(?:Exception|Error)\b|\b[A-Z]\w+(?:Exception|Error)\b"
    r"|\bERR-\d{3,6}\b",
    re.IGNORECASE,
)

MAX_PIXELS = 40_000_000
ACCEPTED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}


class PhotoError(ValueError):
    """The photo cannot be read: not base64, not an image, too large."""


def decode_photo(data: str, limit: int) -> bytes:
    if not isinstance(data, str) or not data.strip():
        raise PhotoError("media_data is empty")
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if not re.match(r"data:image/[a-z0-9.+-]+;base64$", header, re.I):
            raise PhotoError("media_data must be a base64 image (data:image/...;base64,...)")
    if len(data) > limit * 4 // 3 + 8:
        raise PhotoError(f"the photo is larger than {limit // (1024 * 1024)} MB")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PhotoError("media_data is not valid base64") from exc
    if len(raw) > limit:
        raise PhotoError(f"the photo is larger than {limit // (1024 * 1024)} MB")
    return raw


def open_image(raw: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(raw))
        if image.format not in ACCEPTED_FORMATS:
            raise PhotoError(f"unsupported image type {image.format}")
        if image.width * image.height > MAX_PIXELS:
            raise PhotoError("the photo has too many pixels")
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise PhotoError("media_data is not an image (PNG, JPEG, WEBP...)") from exc
    return image


def prepare(image: Image.Image) -> Image.Image:
    """Grey, auto-contrast (a dim or washed-out screen), deskewed, thresholded."""
    grey = ImageOps.exif_transpose(image).convert("L")
    grey = ImageOps.autocontrast(grey, cutoff=1)
    grey = _deskew(grey)
    histogram = grey.histogram()
    threshold = _otsu(histogram)
    binary = grey.point(lambda v: 255 if v > threshold else 0)
    # Light text on a dark screen: Tesseract reads dark on light.
    if sum(histogram[: threshold + 1]) > sum(histogram[threshold + 1 :]):
        binary = ImageOps.invert(binary)
    return binary


def _otsu(histogram: list[int]) -> int:
    total = sum(histogram)
    weighted = sum(i * h for i, h in enumerate(histogram))
    best, threshold, background, sum_background = 0.0, 127, 0, 0.0
    for value, count in enumerate(histogram):
        background += count
        if background == 0:
            continue
        foreground = total - background
        if foreground == 0:
            break
        sum_background += value * count
        mean_b = sum_background / background
        mean_f = (weighted - sum_background) / foreground
        between = background * foreground * (mean_b - mean_f) ** 2
        if between > best:
            best, threshold = between, value
    return threshold


def _deskew(grey: Image.Image) -> Image.Image:
    """Try small rotations on a thumbnail and keep the one whose dark rows are most uneven
    (text lines lined up horizontally give sharp row profiles)."""
    thumb = grey.copy()
    thumb.thumbnail((400, 400))
    threshold = _otsu(thumb.histogram())
    dark_is_text = sum(thumb.histogram()[: threshold + 1]) < sum(thumb.histogram()[threshold + 1 :])

    def score(angle: float) -> float:
        rotated = thumb.rotate(angle, expand=True, fillcolor=255 if dark_is_text else 0)
        data = rotated.point(lambda v: 1 if (v <= threshold) == dark_is_text else 0)
        width, height = data.size
        pixels = data.tobytes()
        rows = [sum(pixels[y * width : (y + 1) * width]) for y in range(height)]
        mean = sum(rows) / max(len(rows), 1)
        return sum((r - mean) ** 2 for r in rows)

    best_angle: float = 0.0
    best_score = score(0.0)
    for angle in (-12.0, -9.0, -6.0, -4.0, -2.0, 2.0, 4.0, 6.0, 9.0, 12.0):
        value = score(angle)
        if value > best_score * 1.02:
            best_angle, best_score = angle, value
    for angle in (best_angle - 1, best_angle + 1):
        value = score(angle)
        if value > best_score:
            best_angle, best_score = angle, value
    if best_angle == 0:
        return grey
    return grey.rotate(best_angle, expand=True, fillcolor=255 if dark_is_text else 0, resample=Image.Resampling.BICUBIC)


def recognise(image: Image.Image) -> str:
    import pytesseract

    prepared = prepare(image)
    return pytesseract.image_to_string(prepared, lang="kor+eng", config="--psm 6").strip()


def error_codes(text: str) -> list[str]:
    return list(dict.fromkeys(m.group(0) for m in ERROR_CODES.finditer(text)))


def read_photo(raw: bytes) -> dict:
    """``{"text", "error_codes"}`` for a photo (bytes); raises PhotoError for a non-image."""
    text = recognise(open_image(raw))
    return {"text": text, "error_codes": error_codes(text)}
