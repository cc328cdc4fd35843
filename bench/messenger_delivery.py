"""Notification to chat on the embedded Synapse: 100 approval requests queued at once
(one transaction, as an escalation sweep would), delivered by the bot; p50/p95 of the time
from commit to the homeserver storing the message in the person's direct room
(origin_server_ts), and the messages per second the bot sustains on a larger batch.
Every message is read back by its recipient and counted: each must arrive exactly once.

Run: .venv/bin/python bench/messenger_delivery.py [--approvals 100 --people 10 --burst 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

PARSER = argparse.ArgumentParser()
PARSER.add_argument("--approvals", type=int, default=100)
PARSER.add_argument("--people", type=int, default=10)
PARSER.add_argument("--burst", type=int, default=500, help="messages for the throughput figure")
ARGS = PARSER.parse_args()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchenv
from django.contrib.auth.models import User
from django.db import transaction

from governance.notify import Message, notify
from intake.messenger.accounts import save_identity
from intake.messenger.homeserver import Homeserver
from intake.models import ChatChannel, MessengerIdentity, OutboxMessage
from tests.synapse import BOT_PASSWORD, BotThread, Person
from tests.waiting import wait_until


def queue(people: list[User], count: int, label: str) -> float:
    """Queue ``count`` notifications round-robin in one transaction; the commit time."""
    with transaction.atomic():
        for n in range(count):
            notify(
                people[n % len(people)],
                Message(
                    f"[{label} {n}] 승인 요청 (시스템 담당자, 직접)\n실행 계획 0123456789ab · 서버 2대", kind="approval"
                ),
            )
    return time.time()


def settle(readers: list[Person], label: str, count: int, timeout: float) -> list[dict]:
    wait_until(lambda: not OutboxMessage.objects.backlog().exists(), timeout, 0.05, message="backlog not drained")

    def arrived() -> list[dict]:
        for reader in readers:
            reader.sync(timeout_ms=0)
        seen = [m for reader in readers for m in reader.received if m["body"].startswith(f"[{label} ")]
        return seen if len(seen) >= count else []

    seen = wait_until(arrived, 30, 0.1, message=f"not every {label} message reached its reader")
    bodies = [m["body"].split("]")[0] for m in seen]
    assert len(bodies) == count and len(set(bodies)) == count, f"{len(bodies)} received, {len(set(bodies))} distinct"
    return seen


def main() -> None:
    server = Homeserver(Path(tempfile.mkdtemp(prefix="guardia-synapse-")))
    started = time.monotonic()
    server.start()
    print(f"Synapse up in {time.monotonic() - started:.1f} s · {benchenv.machine_line()}")
    server.register("guardia", BOT_PASSWORD)
    people, readers = [], []
    for n in range(ARGS.people):
        user = User.objects.create_user(f"lead{n}", password="x")
        reader = Person(server, f"lead{n}")
        save_identity("bench", MessengerIdentity(user=user, channel=ChatChannel.MATRIX, matrix_id=reader.matrix_id))
        people.append(user)
        readers.append(reader)
    try:
        with BotThread(server) as bot:
            queue(people, len(people), "warm")  # the direct rooms are opened here, outside the figures
            settle(readers, "warm", len(people), 60)
            for reader in readers:
                reader.open_direct_room(bot.user_id)

            committed = queue(people, ARGS.approvals, "approval")
            seen = settle(readers, "approval", ARGS.approvals, 120)
            stamps = _server_times(readers, "approval")
            latencies = [stamp - committed for stamp in stamps]
            print(
                f"{ARGS.approvals} approvals queued at once to {ARGS.people} people: "
                f"p50 {benchenv.percentile(latencies, 0.5) * 1000:.0f} ms, "
                f"p95 {benchenv.percentile(latencies, 0.95) * 1000:.0f} ms, "
                f"last {max(latencies) * 1000:.0f} ms · each received once ({len(seen)}) · {benchenv.machine_line()}"
            )

            committed = queue(people, ARGS.burst, "burst")
            settle(readers, "burst", ARGS.burst, 600)
            stamps = _server_times(readers, "burst")
            span = max(stamps) - committed
            print(
                f"burst of {ARGS.burst}: {ARGS.burst / span:.0f} messages/s sustained ({span:.1f} s) · "
                f"{benchenv.machine_line()}"
            )
            # The same homeserver written to by a plain client, one message after another: the
            # ceiling the bot is measured against in this run (same machine, same load).
            began = time.monotonic()
            for n in range(100):
                readers[0].say(f"[raw {n}] baseline")
            print(
                f"plain client baseline: {100 / (time.monotonic() - began):.0f} messages/s · {benchenv.machine_line()}"
            )
    finally:
        server.stop()


def _server_times(readers: list[Person], label: str) -> list[float]:
    """origin_server_ts (seconds) of every message of this round, read from the rooms."""
    stamps = []
    for reader in readers:
        stamps += [m["ts"] / 1000 for m in reader.received if m["body"].startswith(f"[{label} ")]
    return stamps


if __name__ == "__main__":
    main()
