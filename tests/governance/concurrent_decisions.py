"""Approval decisions from several threads at once against one database, some of them rolled
back after their audit append; prints the facts the chain test asserts as one JSON line.

Run in a subprocess with GUARDIA_DATABASE_URL set (tests/governance/test_decision_chain.py):
``python -m tests.governance.concurrent_decisions THREADS PER_THREAD``. Every fifth decision of
a thread is made inside a transaction that is then rolled back, so its entries (and its place
in the chain) must vanish while the other threads keep appending."""

from __future__ import annotations

import json
import sys
import threading


class RolledBack(Exception):
    pass


def run(threads: int, per_thread: int) -> dict:
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction

    from audit.models import AuditEntry
    from audit.verify import verify_chain
    from cmdb.models import Institution
    from governance.models import ApprovalStep, StepStatus
    from governance.services import decide_step
    from tests.approval_work import pending_owner_approvals

    requester = User.objects.create_user("req")
    supervisor = User.objects.create_user("sup")
    supervisor.groups.add(Group.objects.get(name="supervisor"))
    institution = Institution.objects.create(code="CONC", name="동시기관", tier=2)
    work = []
    for n in range(threads):
        owner = User.objects.create_user(f"owner{n}")
        owner.groups.add(Group.objects.get(name="team_lead"))
        _token, steps = pending_owner_approvals(owner=owner, supervisor=supervisor, requester=requester,
                                                institution=institution, code=f"C{n:02d}", name=f"시스템{n}",
                                                count=per_thread, title="concurrent")  # fmt: skip
        work.append((owner, steps))
    barrier = threading.Barrier(threads)
    errors: list[str] = []
    undone: list[int] = []

    def decide(owner, steps: list[int]) -> None:
        try:
            barrier.wait()
            for i, step_id in enumerate(steps):
                if i % 5 == 4:
                    try:
                        with transaction.atomic():
                            decide_step(owner, step_id, "APPROVED", "롤백")
                            raise RolledBack
                    except RolledBack:
                        undone.append(step_id)
                else:
                    decide_step(owner, step_id, "APPROVED", "동시")
        except Exception as exc:  # reported to the test, which fails
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    pool = [threading.Thread(target=decide, args=item) for item in work]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    rows = list(AuditEntry.objects.order_by("seq").values_list("seq", "task", "action"))
    by_task: dict[str, list[tuple[int, str]]] = {}
    for seq, task, action in rows:
        if not task.startswith("OPS-"):
            continue  # the set-up's own entries (users, groups)
        by_task.setdefault(task, []).append((seq, action))
    undone_tasks = set(ApprovalStep.objects.filter(pk__in=undone).values_list("task__task_id", flat=True))
    report = verify_chain()
    return {
        "vendor": connection.vendor,
        "errors": errors,
        "seqs": [seq for seq, _task, _action in rows],
        "decision_entries": sum(len(e) for e in by_task.values()),
        "decided_tasks": sorted(t for t in by_task if t not in undone_tasks),
        "undone_with_entries": sorted(undone_tasks & set(by_task)),
        "undone_still_pending": ApprovalStep.objects.filter(pk__in=undone, status=StepStatus.PENDING).count(),
        "undone": len(undone),
        "shapes": sorted({json.dumps([a for _s, a in e]) for e in by_task.values()}),
        "adjacent": all(e[-1][0] - e[0][0] == len(e) - 1 for e in by_task.values()),
        "verify_ok": report.ok,
        "verify": report.message(),
        "checkpoints": report.checkpoints,
    }


def main() -> None:
    import django

    django.setup()
    print(json.dumps(run(int(sys.argv[1]), int(sys.argv[2]))))


if __name__ == "__main__":
    main()
