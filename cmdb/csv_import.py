"""CSV import of servers (TB_SERVER_INFO), environment schemas (TB_ENV_SCHEMA) and security
policies (TB_SECURITY_POLICY): every row is validated, and nothing is imported unless every
row is good. Profile rows are scoped to the importer's systems.

Row numbers are file line numbers, as a spreadsheet shows them: the header is row 1, the
first server is row 2. Validation is done in bulk (one query for systems, one for
credentials, one for existing server ids) so 1,000 rows cost a handful of queries.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import cast

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils.translation import gettext

import audit

from .models import SERVER_SETTINGS_FIELDS, Credential, EnvSchema, Gateway, SecurityPolicy, Server, System
from .profiles import DEFAULT_MUST_MATCH, SCANNED_FIELDS

# The environment schema's columns after server_id, in the admin's order.
ENV_SCHEMA_FIELDS = (*SCANNED_FIELDS[:4], "service_name", *SCANNED_FIELDS[4:], "must_match")

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


def read_rows(text: str, required: list[str], columns: list[str], what: str, result: ImportResult):
    """The header checked and the records with their file line numbers; ([], [], []) with
    ``result.errors`` filled when the header or the row count is wrong."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        result.errors.append(RowError(1, "", "the file is empty; the first row must be the column header"))
        return [], [], []
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in columns]
    if missing:
        result.errors.append(RowError(1, "", f"missing column(s): {', '.join(missing)}"))
    if unknown:
        result.errors.append(RowError(1, "", f"unknown column(s): {', '.join(unknown)}; allowed: {', '.join(columns)}"))
    if result.errors:
        return [], [], []

    # line_num is the file line a record ended on, so blank lines do not shift the numbers.
    rows, lines = [], []
    for values in reader:
        rows.append(values)
        lines.append(reader.line_num)
    result.rows = len(rows)
    if not rows:
        result.errors.append(RowError(2, "", f"no {what} rows after the header"))
        return [], [], []
    if len(rows) > MAX_ROWS:
        result.errors.append(RowError(MAX_ROWS + 2, "", f"at most {MAX_ROWS} rows per upload"))
        return [], [], []
    return header, rows, lines


def surplus_cells(values: dict, header: list[str], row: int) -> RowError | None:
    if None in values:  # csv puts surplus cells under the key None
        return RowError(row, "", f"{len(header) + len(values[None])} cells, but the header has {len(header)}")
    return None


def validate_rows(text: str) -> tuple[list[Server], ImportResult]:
    result = ImportResult()
    header, rows, lines = read_rows(text, REQUIRED, COLUMNS, "server", result)
    if not rows:
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
        surplus = surplus_cells(values, header, row)
        if surplus:
            result.errors.append(surplus)
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


def read_upload(data: bytes | str) -> tuple[str, ImportResult | None]:
    """The upload as text, or the result that refuses it (too large, not UTF-8/CP949)."""
    if isinstance(data, str):
        return data, None
    if len(data) > MAX_BYTES:
        return "", ImportResult(errors=[RowError(0, "", f"file larger than {MAX_BYTES // (1024 * 1024)} MiB")])
    try:
        return decode(data), None
    except ValidationError as exc:
        return "", ImportResult(errors=[RowError(0, "", exc.messages[0])])


def import_servers(actor, data: bytes | str, *, filename: str = "") -> ImportResult:
    """Validate every row; import all of them in one transaction or none at all."""
    text, refused = read_upload(data)
    if refused is not None:
        return refused
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


# --- TB_ENV_SCHEMA and TB_SECURITY_POLICY ---------------------------------------------------------


@dataclass(frozen=True)
class ProfileTable:
    """One site-profile table as CSV: a key column naming the row's server (or system), and
    the model's own fields. A row for a server (system) that has a row already replaces it."""

    model: type[models.Model]
    key: str  # the CSV column: server_id or system (the system's code)
    owner: str  # the model's one-to-one field: server or system
    columns: tuple[str, ...]
    action: str
    what: str

    def owners(self, actor, keys: set[str]) -> dict:
        """Only what the importer may see: another institution's server is "unknown"."""
        if self.owner == "server":
            return {s.server_id: s for s in Server.objects.for_user(actor).filter(server_id__in=keys)}
        return {s.code: s for s in System.objects.for_user(actor).filter(code__in=keys)}

    def example(self) -> list[str]:
        if self.owner == "server":
            return [
                "was-01", "linux", "rhel 8.6", "", "systemd", "tomcat.service", "tomcat", "/app/tomcat",
                "", "", "/app/tomcat/logs/catalina.out", "/usr/lib/jvm/java-17", "17.0.9", DEFAULT_MUST_MATCH,
            ]  # fmt: skip
        return ["SYS001", "key", "22", "22", "SSH from the GUARDiA worker subnet only"]


ENV_SCHEMA = ProfileTable(
    EnvSchema, "server_id", "server", ("server_id", *ENV_SCHEMA_FIELDS), "cmdb.env_schema_import", "schema"
)
SECURITY_POLICY = ProfileTable(
    SecurityPolicy,
    "system",
    "system",
    ("system", "ssh_auth", "port_min", "port_max", "firewall_notes"),
    "cmdb.security_policy_import",
    "policy",
)


def _profile_row(table: ProfileTable, obj, header: list[str], values: dict) -> list[tuple[str, str]]:
    """Fill ``obj`` from one row; each problem names its field. An empty cell is the field's default."""
    problems: list[tuple[str, str]] = []
    for name in header:
        if name == table.key:
            continue
        column = cast(models.Field, table.model._meta.get_field(name))  # the columns name concrete fields
        raw = (values.get(name) or "").strip()
        try:
            setattr(obj, name, column.to_python(raw) if raw else column.get_default())
        except ValidationError as exc:
            problems.extend((name, m) for m in exc.messages)
    try:
        obj.full_clean(exclude=[table.owner, *(n for n, _m in problems)], validate_unique=False)
    except ValidationError as exc:
        problems.extend((n if n != "__all__" else "", m) for n, ms in exc.message_dict.items() for m in ms)
    return problems


def import_profiles(actor, table: ProfileTable, data: bytes | str, *, filename: str = "") -> ImportResult:
    """Validate every row against the importer's scope; write all of them in one transaction
    (creating or replacing each server's schema / system's policy) or none at all."""
    text, refused = read_upload(data)
    if refused is not None:
        return refused
    result = ImportResult()
    header, rows, lines = read_rows(text, [table.key], list(table.columns), table.what, result)
    if not rows:
        return result
    owners = table.owners(actor, {(r.get(table.key) or "").strip() for r in rows})
    existing = {
        getattr(o, f"{table.owner}_id"): o
        for o in table.model._default_manager.filter(**{f"{table.owner}__in": list(owners.values())})
    }
    objects: list[models.Model] = []
    first_seen: dict[str, int] = {}
    for row, values in zip(lines, rows, strict=True):
        key = (values.get(table.key) or "").strip()
        problem = surplus_cells(values, header, row)
        if problem is None and key not in owners:
            problem = RowError(row, table.key, f"unknown {table.owner} {key!r}" if key else "this field is required")
        if problem is None and key in first_seen:
            problem = RowError(row, table.key, f"duplicate {table.owner} {key!r}: first on row {first_seen[key]}")
        if problem is not None:
            result.errors.append(problem)
            continue
        first_seen[key] = row
        owner = owners[key]
        obj = existing.get(owner.pk) or table.model(**{table.owner: owner})
        result.errors.extend(RowError(row, f, m) for f, m in _profile_row(table, obj, header, values))
        objects.append(obj)
    if not result.ok:
        return result
    with transaction.atomic():
        for obj in objects:
            obj.save()
        replaced = sum(1 for o in objects if getattr(o, f"{table.owner}_id") in existing)
        payload = {"rows": len(objects), "replaced": replaced, "file": filename[:200]}
        audit.record(actor, table.action, payload=payload)
    result.created = len(objects) - replaced
    return result


def profile_template_csv(table: ProfileTable) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.columns)
    writer.writerow(table.example())
    return out.getvalue()
