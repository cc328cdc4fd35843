#!/usr/bin/env python3
"""Build the demo application: dist/app.war, a real WAR (a zip with META-INF/MANIFEST.MF).

The version is VERSION plus the first 8 hex digits of the SHA-256 of src/, so a changed page
is a new version the WAS reports. Fixed timestamps: the same sources give the same bytes.
"""

import hashlib
import os
import sys
import zipfile

STAMP = (2026, 1, 1, 0, 0, 0)


def main() -> int:
    sources = sorted(os.path.join(root, name) for root, _dirs, names in os.walk("src") for name in names)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.encode() + b"\0" + open(path, "rb").read())
    page = open("src/index.html", encoding="utf-8").read()
    if "<title>" not in page:
        print("build: src/index.html has no <title>", file=sys.stderr)
        return 2
    version = open("VERSION").read().strip() + "+" + digest.hexdigest()[:8]
    manifest = (
        f"Manifest-Version: 1.0\r\nImplementation-Title: guardia-demo-app\r\nImplementation-Version: {version}\r\n\r\n"
    )
    os.makedirs("dist", exist_ok=True)
    with zipfile.ZipFile("dist/app.war", "w") as war:
        entries = [
            ("META-INF/MANIFEST.MF", manifest.encode()),
            ("WEB-INF/classes/version.properties", f"version={version}\n".encode()),
        ]
        entries += [(os.path.relpath(path, "src"), open(path, "rb").read()) for path in sources]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            war.writestr(info, data)
    print(f"build: dist/app.war version {version} ({len(sources)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
