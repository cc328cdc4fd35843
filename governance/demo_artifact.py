"""The demo's sample deploy artifact: a small, real WAR for a given version.

A WAR is a zip archive with ``META-INF/MANIFEST.MF``; ``Implementation-Version`` there is
what a WAS (and the testbed's stand-in) reports as the application's version. The
archive also carries ``WEB-INF/classes/version.properties`` with ``version=X`` stored
uncompressed, so tools that only grep the bytes (the testbed's shell scripts) find the
same version.

The bytes depend only on the version (fixed timestamps, fixed order), so the same
version always gives the same SHA-256: a re-downloaded artifact matches an approved plan.
Offered by ``manage.py demo_artifact`` and by the console's new-request page.
"""

from __future__ import annotations

import io
import re
import zipfile

VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")
_STAMP = (2026, 1, 1, 0, 0, 0)


def valid_version(version: str) -> bool:
    return bool(VERSION_PATTERN.fullmatch(version or ""))


def build_war(version: str) -> bytes:
    """The sample WAR for ``version``; ValueError naming the field when the version is malformed."""
    if not valid_version(version):
        raise ValueError("version: letters, digits, '.', '_', '+' or '-' (at most 64, starting with a letter or digit)")
    manifest = (
        "Manifest-Version: 1.0\r\n"
        "Created-By: GUARDiA demo\r\n"
        "Implementation-Title: guardia-demo-app\r\n"
        f"Implementation-Version: {version}\r\n"
        "\r\n"
    )
    entries = [
        ("META-INF/MANIFEST.MF", manifest, zipfile.ZIP_DEFLATED),
        ("WEB-INF/classes/version.properties", f"version={version}\n", zipfile.ZIP_STORED),
        (
            "WEB-INF/web.xml",
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0">\n'
            "  <display-name>guardia-demo-app</display-name>\n</web-app>\n",
            zipfile.ZIP_DEFLATED,
        ),
        (
            "index.html",
            f"<!doctype html><title>GUARDiA demo</title><p>demo application {version}</p>\n",
            zipfile.ZIP_DEFLATED,
        ),
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text, method in entries:
            info = zipfile.ZipInfo(name, date_time=_STAMP)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            archive.writestr(info, text.encode("utf-8"))
    return buffer.getvalue()


def file_name(version: str) -> str:
    return f"guardia-demo-{version}.war"
