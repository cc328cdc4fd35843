"""Writes what the workers report: StepResult rows, audit entries, ServerRun states, live events.

Only the engine's orchestrating thread calls ``drain()``; the SSH worker threads just put
Records on a queue. One writer means one SQLite connection doing the writing for a run,
in batches of one transaction, and workers that never wait for the database.

Everything a server said is redacted (audit.scrub with the secrets this worker decrypted,
as cmdb.vault.redact does) before it is stored, audited or sent live: the step's command and
output, the server's message, log tail and health answers. A step's command and output were
redacted by its worker already; they are redacted here again only when a secret became known
after the worker's pass (Recorder._redact), and everything else is redacted here. Whatever is
built later from these rows (the result package the PM validates, the console's timeline) is
therefore redacted too. When redaction changed an output, its stored SHA-256 is that of the
redacted text, so a short secret cannot be recovered by hashing guesses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import queue
import threading
from typing import cast

from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

import audit
from audit import scrub
from audit.rows import row_values
from cmdb import vault
from governance import events
from governance.reports import live_lines

from .models import ServerRun, StepResult
from .rolling import EXCERPT, Record, output_digest

log = logging.getLogger(__name__)


def _insert_rows(objs: list[StepResult]) -> None:
    if not objs:
        return
    fields = [f for f in StepResult._meta.concrete_fields if not f.primary_key]
    qn = connection.ops.quote_name
    names, marks = ", ".join(qn(str(f.column)) for f in fields), ", ".join(["%s"] * len(fields))
    rows = row_values(objs, fields, pre_save=True)
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {qn(StepResult._meta.db_table)} ({names}) VALUES ({marks})", rows)


def _update_rows(runs: list[ServerRun], names: list[str]) -> None:
    if not runs or not names:
        return
    fields = [cast(Field, ServerRun._meta.get_field(name)) for name in names]
    qn = connection.ops.quote_name
    assignments = ", ".join(f"{qn(str(f.column))} = %s" for f in fields)
    rows = [row + [run.pk] for row, run in zip(row_values(runs, fields), runs, strict=True)]
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {qn(ServerRun._meta.db_table)} SET {assignments} WHERE id = %s", rows)


class LiveSender:
    """A run's live events, sent in order from one thread with one event loop for the whole run.

    events.send_many goes through async_to_sync, which starts a thread and a new event loop
    (and with them a new Redis connection) for every call: ~9 ms of the orchestrating thread
    per drain, 150 times for 100 servers. Here the orchestrating thread only queues a batch;
    close() waits until everything queued is out, so a run's events have left when it returns.
    Best effort like events.send_many: a layer that fails loses events, never the run."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[list | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="guardia-live", daemon=True)
        self.thread.start()

    def send(self, items: list[tuple[str, events.LiveEvent]]) -> None:
        if items:
            self.queue.put(items)

    def close(self, timeout: float = 30) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def _loop(self) -> None:
        layer = get_channel_layer()
        loop = asyncio.new_event_loop()
        try:
            while (batch := self.queue.get()) is not None:
                items = list(batch)
                while not self.queue.empty():  # whatever queued meanwhile goes in the same hop
                    more = self.queue.get()
                    if more is None:
                        self.queue.put(None)
                        break
                    items += more
                if layer is None:
                    continue
                try:
                    # One message per group for the whole hop, its JSON encoded once for every socket.
                    loop.run_until_complete(events.deliver(layer, items))
                except Exception:  # Redis down must not break the run
                    log.warning("%d live events not delivered", len(items), exc_info=True)
        finally:
            loop.close()


class Recorder:
    def __init__(self, engine, runs: dict[str, ServerRun], live: LiveSender | None = None):
        self.engine = engine
        self.runs = runs
        self.institution = engine.institution_code
        self.live = live  # None: each drain sends through events.send_many itself
        self._appends: list[tuple] = []
        self._lines: list[tuple[int, events.LiveEvent]] = []
        self._dirty: dict[int, ServerRun] = {}
        self._dirty_fields: set[str] = set()
        self._known: tuple[str, ...] = ()

    def drain(self) -> int:
        items: list[Record] = []
        while True:
            try:
                items.append(self.engine.records.get_nowait())
            except queue.Empty:
                break
        if not items:
            return 0
        live: list[events.LiveEvent] = []
        steps: list[StepResult] = []
        self._appends, self._lines = [], []  # the batch's audit entries in order, and the step events showing them
        self._dirty, self._dirty_fields = {}, set()  # server rows changed by this batch, and which columns
        self._known = vault.known_secrets()  # after every record taken: their workers' snapshots are older
        with transaction.atomic():
            for item in items:
                if item.kind == "step":
                    steps.append(self._step(item, live))
                elif item.kind == "server":
                    self._server(item, live)
            # One executemany each for the batch's step rows and its server rows (the objects here are
            # the one writer's copy): bulk_create and bulk_update build an expression per object and
            # field, which cost the orchestrating thread ~13 ms and ~47 ms a drain at 1,000 servers.
            _insert_rows(steps)
            _update_rows(list(self._dirty.values()), sorted(self._dirty_fields))
            # One chain-head round for the whole batch: the same entries, in the same order.
            entries = audit.record_many(self._appends) if self._appends else []
        for item in items:  # a worker waiting for its steps to be in the journal (ServerContext.journaled)
            if item.kind == "journaled":
                item.data["committed"].set()
        # The task page's timeline line for each audited step, as a reload renders it.
        for (_, event), line in zip(self._lines, live_lines([entries[index] for index, _ in self._lines]), strict=True):
            event.data["line"] = line
        group = self.engine.live_group
        if group:
            # One event-loop hop for the whole batch: a hop per event (~1 ms each, 14,000 for
            # a 1,000-server deploy) held the orchestrating thread the workers wait on.
            self.send([(group, event) for event in live])
        return len(items)

    def send(self, items: list[tuple[str, events.LiveEvent]]) -> None:
        if self.live is not None:
            self.live.send(items)
        else:
            events.send_many(items)

    def _step(self, item: Record, live: list) -> StepResult:
        data = item.data
        raw = str(data.get("output") or "")
        output = self._redact(raw, data)  # the whole output, before any excerpt could cut a key block in two
        run = self.runs[item.server_id]
        started = dt.datetime.fromtimestamp(data.get("started") or timezone.now().timestamp(), tz=dt.UTC)
        duration_ms = int((data.get("duration") or 0) * 1000)
        if output != raw:
            sha = output_digest(output)
        else:
            sha = data.get("sha256") or (output_digest(output) if output else "")
        step = StepResult(
            server_run=run,
            seq=data["seq"],
            name=data["name"][:64],
            phase=data["phase"],
            command=self._redact(str(data.get("command", "")), data),
            exit_code=data.get("exit_code"),
            output_excerpt=output[-EXCERPT:],
            output_sha256=sha,
            duration_ms=duration_ms,
            state=data["state"],
            started_at=started,
        )
        event = events.LiveEvent(
            kind="step",
            task_id=self.engine.task_ref,
            status=step.state,
            message=f"{item.server_id} {step.name}",
            data={
                "server": item.server_id,
                "step": step.name,
                "phase": step.phase,
                "exit_code": step.exit_code,
                "duration_ms": duration_ms,
            },
        )
        live.append(event)
        common = {"task": self.engine.task_ref, "target": item.server_id, "command": step.command}
        if data.get("audit"):
            self._lines.append((len(self._appends), event))
            payload = {
                "institution": self.institution,
                "step": step.name,
                "phase": step.phase,
                "state": step.state,
                "duration_ms": duration_ms,
                "execution": self.engine.execution.pk,
            }
            columns = {**common, "result_code": step.exit_code, "output": output, "payload": payload}
            self._appends.append((self.engine.actor, "execution.step", columns))
        if data.get("violation"):
            payload = {"institution": self.institution, "reason": output[:500]}
            self._appends.append((self.engine.actor, "security.violation", {**common, "payload": payload}))
        return step

    def _redact(self, text: str, data: dict) -> str:
        """``text`` as the step stores it: redacted with every secret known now. A worker's step
        (ServerContext.run) was redacted with the known secrets of its own snapshot, whose count it
        sends (redacted_with); the set only grows, so the same count is the same set and a second
        pass would find nothing new. Redacted here again: when a secret became known meanwhile
        (decrypted by another thread after the worker's pass), and whatever the worker did not redact
        (checks, uploads, a transport's error, a resumed run's replayed output)."""
        if data.get("redacted_with") == len(self._known):
            return text
        return scrub.redact_text(text, self._known)

    def _server(self, item: Record, live: list) -> None:
        data = item.data
        run = self.runs[item.server_id]
        fields = {"state": data["state"]}
        now = timezone.now()
        if data["state"] == "RUNNING" and run.started_at is None:
            fields["started_at"] = run.started_at = now
        elif data["state"] != "RUNNING":
            fields["finished_at"] = run.finished_at = now
        for key in ("message", "log_tail", "health"):
            if key in data:
                fields[key] = vault.redact_structure(data[key])
        for key, value in fields.items():
            setattr(run, key, value)
        self._dirty[run.pk] = run
        self._dirty_fields.update(fields)
        live.append(
            events.LiveEvent(
                kind="server",
                task_id=self.engine.task_ref,
                status=data["state"],
                message=str(fields.get("message", ""))[:300],
                data={"server": item.server_id, "group": run.group_index},
            )
        )
