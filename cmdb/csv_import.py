"""Server CSV import (TB_SERVER_INFO): every row is validated, and nothing is imported
unless every row is good.

Row numbers are file line numbers, as a spreadsheet shows them: the header is row 1, the
first server is row 2. Validation is done in bulk (one query for systems, one for
credentials, one for existing server ids) so 1,000 rows cost a handful of queries.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext

import audit

from .models import SERVER_SETTINGS_FIELDS, Credential, Gateway, Server, System

REQUIRED = ["server_id", "system", "hostname", "ip"]
OPTIONAL = [
    "os_type",
    "ssh_port",
    "ssh_user",
    "credential",
    *SERVER_SETTINGS_FIELDS,
    "gateway",  # a server on a network segment another site gateway reaches (blank: the institution's)
]
COLUMNS = REQUIRED + OPTIONAL
BOOLEAN_COLUMNS = {"canary", "active"}
TRUE = {"1", "true", "t", "yes", "y", "예"}
FALSE = {"0", "false", "f", "no", "n", "아니오", ""}
MAX_ROWS = 20_000
MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.message}" if self.field else f"row {self.row}: {self.message}"


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def error_rows(self) -> list[int]:
        return sorted({e.row for e in self.errors})


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM) first; Korean Excel saves CSV as CP949, so try that next."""
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValidationError(gettext("파일이 UTF-8이나 CP949 텍스트가 아닙니다"))


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError(f"expected yes/no, true/false or 1/0, got {text!r}")


def _build(values: dict[str, str], systems: dict[str, System], references: dict[str, dict]):
    """One row -> (unsaved Server, [(field, message)]). ``references``: the credential and gateway
    rows the file names, preloaded by name."""
    problems: list[tuple[str, str]] = []
    kwargs: dict = {}
    for name in COLUMNS:
        raw = (values.get(name) or "").strip()
        if name == "system":
            system = systems.get(raw)
            if system is None:
                problems.append(("system", f"unknown system {raw!r}" if raw else "this field is required"))
            else:
                kwargs["system"] = system
        elif name in references:
            if raw:
                row = references[name].get(raw)
                if row is None:
                    problems.append((name, f"unknown {name} {raw!r}"))
                else:
                    kwargs[name] = row
        elif name in BOOLEAN_COLUMNS:
            try:
                kwargs[name] = parse_bool(raw) if raw else (name == "active")
            except ValueError as exc:
                problems.append((name, str(exc)))
        elif raw or name in REQUIRED:
            kwargs[name] = raw
    server = Server(**kwargs)
    try:
        # FKs were resolved above from preloaded maps and uniqueness is checked in bulk,
        # so full_clean does no per-row queries.
        server.full_clean(exclude=["system", *references], validate_unique=False)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            problems.extend((name if name != "__all__" else "", m) for m in messages)
    return server, problems


def validate_rows(text: str) -> tuple[list[Server], ImportResult]:
    result = ImportResult()
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        result.errors.append(RowError(1, "", "the file is empty; the first row must be the column header"))
        return [], result
    reader.fieldnames = header
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing:
        result.errors.append(RowError(1, "", f"missing column(s): {', '.join(missing)}"))
    if unknown:
        result.errors.append(RowError(1, "", f"unknown column(s): {', '.join(unknown)}; allowed: {', '.join(COLUMNS)}"))
    if result.errors:
        return [], result

    # line_num is the file line a record ended on, so blank lines do not shift the numbers.
    rows, lines = [], []
    for values in reader:
        rows.append(values)
        lines.append(reader.line_num)
    result.rows = len(rows)
    if not rows:
        result.errors.append(RowError(2, "", "no server rows after the header"))
        return [], result
    if len(rows) > MAX_ROWS:
        result.errors.append(RowError(MAX_ROWS + 2, "", f"at most {MAX_ROWS} rows per upload"))
        return [], result

    codes = {(r.get("system") or "").strip() for r in rows}
    systems = {s.code: s for s in System.objects.filter(code__in=codes)}
    cred_names = {(r.get("credential") or "").strip() for r in rows} - {""}
    credentials = {c.name: c for c in Credential.objects.filter(name__in=cred_names)}
    gateway_names = {(r.get("gateway") or "").strip() for r in rows} - {""}
    references: dict[str, dict] = {
        "credential": credentials,
        "gateway": {g.name: g for g in Gateway.objects.filter(name__in=gateway_names)},
    }
    ids = [(r.get("server_id") or "").strip() for r in rows]
    existing = set(Server.objects.filter(server_id__in=ids).values_list("server_id", flat=True))

    servers: list[Server] = []
    first_seen: dict[str, int] = {}
    for row, values in zip(lines, rows, strict=True):
        if None in values:  # csv puts surplus cells under the key None
            cells = len(header) + len(values[None])
            result.errors.append(RowError(row, "", f"{cells} cells, but the header has {len(header)}"))
            continue
        server, problems = _build(values, systems, references)
        sid = server.server_id
        if sid and sid in existing:
            problems.append(("server_id", f"server {sid!r} already exists in the CMDB"))
        if sid and sid in first_seen:
            problems.append(("server_id", f"duplicate server {sid!r}: first on row {first_seen[sid]}"))
        first_seen.setdefault(sid, row)
        result.errors.extend(RowError(row, f, m) for f, m in problems)
        servers.append(server)
    return servers, result


def import_servers(actor, data: bytes | str, *, filename: str = "") -> ImportResult:
    """Validate every row; import all of them in one transaction or none at all."""
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            return ImportResult(errors=[RowError(0, "", f"file larger than {MAX_BYTES // (1024 * 1024)} MiB")])
        try:
            text = decode(data)
        except ValidationError as exc:
            return ImportResult(errors=[RowError(0, "", exc.messages[0])])
    else:
        text = data
    servers, result = validate_rows(text)
    if not result.ok:
        return result
    with transaction.atomic():
        Server.objects.bulk_create(servers, batch_size=500)
        audit.record(actor, "cmdb.server_import", payload={"rows": len(servers), "file": filename[:200]})
    result.created = len(servers)
    return result


def template_csv() -> str:
    """A header plus one example row, offered for download next to the upload form."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerow(
        [
            "was-01",
            "SYS001",
            "was01.example.go.kr",
            "10.0.0.11",
            "linux",
            "22",
            "deploy",
            "",
            "",
            "/app/was",
            "/app/deploy",
            "/app/backup",
            "/app/bin",
            "/app/logs/catalina.out",
            "8080",
            "http://10.0.0.11:8080/health",
            "1",
            "no",
            "yes",
        ]
    )
    return out.getvalue()
