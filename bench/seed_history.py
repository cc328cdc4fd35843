"""Years of history at the issue's scale (100,000 requests, 1,000,000 audit entries) in minutes.

How the rows get their shape (the product decides it, the seeder copies it):
1. One request per system is filed with governance.services.submit_task (policy, routing,
   approval steps, audit entries, notifications) and decided with services.decide_step by
   whoever each step is assigned to (four-eyes rule, next step, audit), about 15 % left
   pending and 5 % of decisions rejections. These are the templates.
2. Every other request is a copy of its system's template: the task row, its targets, its
   steps, its notifications and its audit entries, written with bulk_create, with its own
   task id, title and time (the template's times shifted by the same amount).
3. Audit entries (the templates' own entries copied per request, plus execution lines) are
   appended in time order, a thousand per transaction: each entry's columns come from
   audit.services.prepare (what audit.record stores), its canonical bytes and hash from
   audit.canonical, and a signed checkpoint (audit.services) closes every thousandth seq,
   as audit.record does; so the chain verifies. The JSON Lines mirror files are not written.

Shortcuts, said here: requests are spread over two years by their timestamps (the product
stamps "now"); approved ones get an execution outcome by a status update (running them
needs the SSH testbed); the templates' own audit entries keep the time they were written.

Run: .venv/bin/python bench/seed_history.py --tasks 100000 --audit 1000000
(bench/years_of_data.py calls seed() itself, or reads a data dir seeded earlier.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

if __name__ == "__main__":
    import benchenv  # Django set up on a throwaway data dir

SUB_TYPES = ["MEMORY_CHECK", "SERVICE_RESTART", "LOG_MINING", "CRON_MANAGE"]
OUTCOMES = ["COMPLETED"] * 7 + ["PENDING_PM_VALIDATION", "FAILED_ROLLED_BACK", "EXECUTING"]
SPAN = dt.timedelta(days=730)
CHUNK = 2000  # copies written per round of bulk_create


def organisation(institutions: int):
    """Institutions, each with a PM, a site manager and two systems (owner, deputy, supervisor)."""
    from tests.factories import InstitutionFactory, ServerFactory, SystemFactory, SystemOwnerFactory, UserFactory

    people = {role: UserFactory(username=f"{role}0", role=role) for role in ("pm", "security_officer", "auditor")}
    people["admin"] = UserFactory(username="admin0", role="admin", is_staff=True)
    places = []
    for i in range(institutions):
        inst = InstitutionFactory(code=f"INST{i:03d}", name=f"기관{i:03d}", tier=1 + i % 2, pm=people["pm"])
        field = UserFactory(username=f"field{i}", role="site_manager")
        inst.site_managers.add(field)
        for j in range(2):
            system = SystemFactory(code=f"SYS{i:03d}{j}", name=f"시스템{i:03d}-{j}", institution=inst)
            SystemOwnerFactory(
                system=system,
                owner=UserFactory(username=f"lead{i}_{j}", role="team_lead"),
                deputy=UserFactory(username=f"deputy{i}_{j}", role="team_lead"),
                supervisor=UserFactory(username=f"sup{i}_{j}", role="supervisor"),
            )
            servers = [ServerFactory(system=system, server_id=f"s{i:03d}{j}-{k}") for k in range(2)]
            places.append((system, field, servers))
    return people, places


def file_template(rng: random.Random, n: int, system, field, servers):
    """One request filed and decided through the services, as its people would."""
    from governance import services
    from governance.errors import GovernanceError
    from governance.models import ApprovalStep, StepStatus

    task = services.submit_task(
        field, system=system, sub_type=rng.choice(SUB_TYPES), title=f"정기 점검 {n}", targets=servers[: 1 + n % 2]
    )
    for _ in range(3):  # decide the open steps, as their assignees would
        step = ApprovalStep.objects.filter(task=task, status=StepStatus.PENDING).exclude(assigned_to=None).first()
        if step is None or rng.random() < 0.15:
            break
        rejected = rng.random() < 0.05
        try:
            services.decide_step(
                step.assigned_to,
                step.pk,
                "REJECTED" if rejected else "APPROVED",
                "반려: 일정 조정" if rejected else "",
                plan_sha256=task.plan_sha256,
            )
        except GovernanceError:
            break
    task.refresh_from_db()
    return task


class ChainWriter:
    """Appends audit entries as audit.record would, a checkpoint interval per transaction."""

    def __init__(self):
        from django.conf import settings

        self.every = max(int(settings.AUDIT_CHECKPOINT_EVERY), 1)
        self.written = 0

    def append(self, rows: list[tuple]) -> None:
        """rows: (time, actor, action, record() keyword arguments), in time order."""
        from django.db import transaction

        from audit import canonical as canon
        from audit import services
        from audit.models import AuditEntry, ChainHead

        done = 0
        while done < len(rows):
            with transaction.atomic():
                seq, head = services._locked_head()
                part = rows[done : done + self.every - seq % self.every]
                entries = []
                for moment, actor, action, columns in part:
                    fields, actor_id, payload, ptext = services.prepare(actor, action, **columns)
                    seq += 1
                    f = fields
                    text = canon.build(
                        seq, canon.time_text(moment), f["actor"], actor_id, f["action"], f["institution"], f["task"],
                        f["target"], f["command"], f["result_code"], f["result_hash"], ptext,
                    )  # fmt: skip
                    digest = canon.chain_hash(text.encode("utf-8"), head)
                    entries.append(
                        AuditEntry(seq=seq, created_at=moment, actor_id=actor_id, payload=payload, prev_hash=head,
                                   entry_hash=digest, canonical=text, **fields)
                    )  # fmt: skip
                    head = digest
                AuditEntry.objects.bulk_create(entries, batch_size=500)
                ChainHead.objects.filter(id=1).update(seq=seq, entry_hash=head)
                if seq % self.every == 0:
                    services._sign_checkpoint(seq, head, "interval")
            done += len(part)
            self.written += len(part)


def _swap(value, old: str, new: str):
    """A copied payload with the template's task id (or title) replaced by the copy's."""
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    return new if value == old else value


class Template:
    """The rows one filed request wrote, ready to copy."""

    def __init__(self, task, servers):
        from audit.models import AuditEntry
        from governance.models import Notification

        self.task, self.servers = task, servers
        self.base = task.created_at
        self.institution = task.system.institution.code
        skip = {"id", "task_id", "title", "created_at", "updated_at", "approved_at", "finished_at"}
        self.fields = {f.attname: getattr(task, f.attname) for f in task._meta.concrete_fields if f.name not in skip}
        self.targets = list(task.targets.values_list("pk", flat=True))
        self.steps = [
            {f.attname: getattr(s, f.attname) for f in s._meta.concrete_fields if f.name not in ("id", "task")}
            for s in task.steps.all()
        ]
        self.notes = [
            {f.attname: getattr(n, f.attname) for f in n._meta.concrete_fields if f.name not in ("id", "task")}
            for n in Notification.objects.filter(task=task)
        ]
        self.entries = list(
            AuditEntry.objects.filter(task=task.task_id)
            .order_by("seq")
            .values_list("created_at", "actor", "actor_id", "action", "target", "command", "result_code", "payload")
        )


def _shifted(row: dict, shift: dt.timedelta) -> dict:
    return {k: (v + shift if isinstance(v, dt.datetime) else v) for k, v in row.items()}


def copy_requests(rng, templates, count: int, now, execution_lines: list[int], writer: ChainWriter) -> None:
    """``count`` copies of the templates over two years, oldest first, with their rows and entries."""
    from django.db import transaction

    from governance.models import ApprovalStep, Notification, OpsTask, Status

    times = sorted(now - SPAN * rng.random() for _ in range(count))
    per_day: dict[dt.date, int] = {}
    Targets = OpsTask.targets.through
    for start in range(0, count, CHUNK):
        plan = []
        for n in range(start, min(count, start + CHUNK)):
            template = templates[rng.randrange(len(templates))]
            created = times[n]
            day = created.date()
            per_day[day] = per_day.get(day, 10_000) + 1  # past the real sequence (templates are filed today)
            fields = {**template.fields, "created_at": created, "updated_at": created}
            fields["approved_at"] = None
            if template.task.status == Status.APPROVED or template.task.approved_at:
                fields["approved_at"] = created + dt.timedelta(minutes=rng.expovariate(1 / 90))
                fields["status"] = rng.choice(OUTCOMES)
            task = OpsTask(task_id=f"OPS-{day:%Y%m%d}-{per_day[day]:03d}", title=f"정기 점검 {n}", **fields)
            plan.append((template, task, created - template.base, execution_lines[n]))
        with transaction.atomic():
            OpsTask.objects.bulk_create([task for _, task, _, _ in plan], batch_size=500)
            Targets.objects.bulk_create(
                [Targets(opstask_id=t.pk, server_id=s) for tpl, t, _, _ in plan for s in tpl.targets], batch_size=1000
            )
            ApprovalStep.objects.bulk_create(
                [ApprovalStep(task_id=t.pk, **_shifted(s, d)) for tpl, t, d, _ in plan for s in tpl.steps],
                batch_size=1000,
            )
            Notification.objects.bulk_create(
                [Notification(task_id=t.pk, **_shifted(x, d)) for tpl, t, d, _ in plan for x in tpl.notes],
                batch_size=1000,
            )
        rows = []
        for template, task, shift, lines in plan:
            old = template.task.task_id
            for moment, actor, _actor_id, action, target, command, code, payload in template.entries:
                columns = {"task": task.task_id, "target": target, "command": command, "result_code": code}
                rows.append((moment + shift, actor, action, {**columns, "payload": _swap(payload, old, task.task_id)}))
            server = template.servers[0]
            institution = {"institution": template.institution}
            for k in range(lines):
                columns = {"task": task.task_id, "target": server.server_id, "command": f"check {k}"}
                rows.append((task.created_at + dt.timedelta(seconds=30 + k), "system", "execution.step",
                             {**columns, "result_code": 0, "output": f"ok {k}", "payload": institution}))  # fmt: skip
        rows.sort(key=lambda row: row[0])
        writer.append(rows)


def seed(tasks: int, audit_entries: int | None = None, seed_value: int = 1) -> dict:
    """Build the data set; returns the people and counts (for the bench to log in as).
    ``audit_entries`` is the chain's length to reach (default: ten entries per request)."""
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    from audit.models import AuditEntry
    from governance.models import OpsTask, Status

    # Seeded accounts get a fast hasher: hashing thousands of passwords is not what is measured.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    rng = random.Random(seed_value)
    started = time.perf_counter()
    people, places = organisation(max(2, tasks // 200))
    now = timezone.now()
    templates = []
    with transaction.atomic():
        for n, (system, field, servers) in enumerate(places[:tasks]):
            task = file_template(rng, n, system, field, servers)
            templates.append(Template(task, servers))
            created = now - SPAN * rng.random()
            update = {"created_at": created}
            if task.status == Status.APPROVED:
                update["approved_at"] = created + dt.timedelta(minutes=rng.expovariate(1 / 90))
                update["status"] = rng.choice(OUTCOMES)
            OpsTask.objects.filter(pk=task.pk).update(**update)
    filed = time.perf_counter() - started
    copies = tasks - len(templates)
    target = audit_entries if audit_entries is not None else 10 * tasks
    per_request = sum(len(t.entries) for t in templates) / len(templates)
    extra = max(0, target - AuditEntry.objects.count() - round(per_request * copies))
    lines = [extra // copies + (1 if n < extra % copies else 0) for n in range(copies)] if copies else []
    writer = ChainWriter()
    copy_requests(rng, templates, copies, now, lines, writer)
    # The copies were written around the transitions that keep the statistics rollup: the
    # audited rebuild (the monthly schedule's job) counts them.
    from governance import rollup

    rollup.rebuild("bench seed_history")
    return {
        "people": people,
        "places": places,
        "tasks": tasks,
        "templates": len(templates),
        "filed_seconds": filed,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--audit", type=int, default=None, help="audit entries to reach (default 10 per request)")
    parser.add_argument("--verify", action="store_true", help="verify the whole chain afterwards")
    args = parser.parse_args()
    from audit.models import AuditEntry
    from governance.models import ApprovalStep, Notification, OpsTask

    result = seed(args.tasks, args.audit)
    print(
        f"{OpsTask.objects.count()} tasks ({result['templates']} filed through the services in "
        f"{result['filed_seconds']:.0f} s), {ApprovalStep.objects.count()} approval steps, "
        f"{Notification.objects.count()} notifications, {AuditEntry.objects.count()} audit entries "
        f"in {result['seconds']:.0f} s; data dir {benchenv.DATA_DIR}"
    )
    if args.verify:
        from audit.verify import verify_chain

        report = verify_chain()
        print(f"verify: {report.message() if hasattr(report, 'message') else report.ok} in {report.seconds:.1f} s")


if __name__ == "__main__":
    main()
