"""Command output is redacted before it is stored or shown: step rows, server rows, the result
package, failure reasons, the audit record. One function does it (audit.scrub.redact_text),
with the vault's known secrets added by cmdb.vault.redact."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from audit import scrub
from audit.models import AuditEntry
from cmdb import vault
from execution.models import ServerRun, StepResult
from execution.services import run_task
from governance.models import OpsTask
from tests.execution import certgen
from tests.execution.engine_helpers import approved_task


@pytest.fixture(scope="module")
def key_block() -> str:
    ca, ca_key = certgen.make_ca()
    _leaf, key = certgen.make_leaf(ca, ca_key)
    return certgen.key_pem(key).decode()


def _key_body(block: str) -> list[str]:
    return [line for line in block.splitlines() if line and not line.startswith("-----")]


def test_a_log_with_a_password_and_a_private_key_is_redacted_everywhere(testbed_cmdb, key_block):
    server = testbed_cmdb[0]
    log = Path(server.log_path)
    log.write_text(
        log.read_text()
        + "2026-11-30 09:00:01 ERROR login failed password=hunter2 user=app\n"
        + "2026-11-30 09:00:02 ERROR dumped key:\n"
        + key_block
        + "2026-11-30 09:00:03 ERROR Authorization: Bearer abcdef0123456789tok\n"
    )
    task = approved_task([server], sub_type="LOG_MINING", parameters={"pattern": "."})

    outcome = run_task(task.pk)
    task.refresh_from_db()
    assert outcome == "SUCCEEDED", task.failure_reason

    step = StepResult.objects.get(server_run__execution__task=task, name="grep-log")
    stored = step.output_excerpt
    assert "password=[REDACTED]" in stored and "[REDACTED PRIVATE KEY]" in stored
    assert "Bearer [REDACTED]" in stored
    package = json.dumps(task.result_package, ensure_ascii=False)
    assert "[REDACTED" in package  # the findings quote the redacted lines
    run = ServerRun.objects.get(execution__task=task)
    everything = [
        stored,
        package,
        run.message,
        run.log_tail or "",
        json.dumps(run.health or {}),
        *AuditEntry.objects.filter(task=task.task_id).values_list("canonical", flat=True),
    ]
    for text in everything:
        assert "hunter2" not in text and "abcdef0123456789tok" not in text
        assert "BEGIN PRIVATE KEY" not in text
        assert not any(line in text for line in _key_body(key_block))
    assert OpsTask.objects.get(pk=task.pk).failure_reason == ""


def test_the_vaults_known_secrets_are_redacted_from_output():
    vault.register_secret("Known-Cred-Secret-77")
    assert vault.redact("echo Known-Cred-Secret-77 done") == "echo [REDACTED] done"
    # audit.scrub itself knows no secret: the vault passes what it decrypted.
    assert scrub.redact_text("echo Known-Cred-Secret-77") == "echo Known-Cred-Secret-77"
    assert scrub.redact_text("echo Known-Cred-Secret-77", known=["Known-Cred-Secret-77"]) == "echo [REDACTED]"


SECRET_FORMS = [
    ("password=hunter2", "hunter2"),
    ("DB_PASSWORD: 'p@ss w0rd'", "p@ss w0rd"),
    ('{"api_key": "k-123456"}', "k-123456"),
    ("mysql -u root --password Hunter2!", "Hunter2!"),
    ("sshpass -p s3cret ssh deploy@host", "s3cret"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("curl -H 'Authorization: Bearer eyJhbGciOi.xyz.abc' http://x", "eyJhbGciOi.xyz.abc"),
    ("Cookie: sessionid=abcdef123456", "abcdef123456"),
    ("jdbc:oracle://scott:tiger@db:1521/ORCL", "tiger"),
    ("key AKIAIOSFODNN7EXAMPLE in env", "AKIAIOSFODNN7EXAMPLE"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
]


@pytest.mark.parametrize(("text", "secret"), SECRET_FORMS)
def test_each_secret_form_is_redacted(text, secret):
    assert secret not in vault.redact(text)


# Texts each rule of audit.scrub matches, in odd cases and with the letters that case-fold apart
# (U+017F long s, U+0130 and U+0131 dotted and dotless i, U+212A Kelvin sign), and ordinary ones.
TRIGGER_CORPUS = [
    *(text for text, _ in SECRET_FORMS),
    "PaSsWoRd=hunter2",
    "pa\u017f\u017fword=hunter2",
    "pr\u0130vate_key=abc123",
    "pr\u0131vate-key: abc123",
    "api\u212aey=abc123",
    "X-Auth-Key: k-1234567",
    "set-cookie: a=b",
    "Proxy-Authorization: Digest abc",
    "mysqladmin -u root -pS3cret status",
    "AWS_SECRET=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "aws_x: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ASIAIOSFODNN7EXAMPLE",
    "--passphrase 'two words'",
    "sftp://deploy:pw123@host/x",
    "mv -f /srv/app/deploy/app.war.1234 /srv/app/app/app.war",
    "pid=1234\nFilesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 100 50 50 50% /",
]


@pytest.mark.parametrize("text", TRIGGER_CORPUS)
def test_a_text_without_a_trigger_word_is_redacted_as_the_rules_would(text):
    # The trigger words only decide whether the rules are searched: the outcome is theirs.
    assert scrub.redact_text(text) == scrub.apply_rules(text)


def test_every_rule_is_exercised_by_the_trigger_corpus():
    # So a rule whose words the triggers miss would show above as a text left unredacted.
    for pattern, _replacement in scrub._RULES:
        assert any(pattern.search(text) for text in TRIGGER_CORPUS), pattern.pattern


def test_a_private_key_block_cut_by_an_excerpt_is_still_redacted(key_block):
    lines = key_block.splitlines()
    head_cut = "\n".join(lines[3:]) + "\nafter"  # BEGIN and the first body lines were cut off
    tail_cut = "before\n" + "\n".join(lines[:-3])  # END was cut off
    for text in (head_cut, tail_cut):
        cleaned = scrub.redact_text(text)
        assert "[REDACTED PRIVATE KEY]" in cleaned
        assert not any(line in cleaned for line in _key_body(key_block)), cleaned


def test_ordinary_output_is_left_alone():
    text = "Password expires in 30 days\nunexpected token in JSON\nversion=1.0.1\nsha256 " + "a" * 64
    assert scrub.redact_text(text) == text


def test_the_log_filter_uses_the_same_redaction(caplog):
    logger = logging.getLogger("guardia.test.redaction")
    logger.addFilter(vault.RedactSecretsFilter())
    try:
        with caplog.at_level(logging.INFO, logger="guardia.test.redaction"):
            logger.info("export AWS key %s", "AKIAIOSFODNN7EXAMPLE")
    finally:
        logger.filters.clear()
    assert "AKIAIOSFODNN7EXAMPLE" not in caplog.text and "[REDACTED]" in caplog.text


def test_a_structure_is_redacted_with_its_known_secrets_longest_first():
    # One sorted list of known secrets serves every string of the structure: a secret that holds
    # a shorter one still goes whole, in every nested value, and secret-looking keys stay masked.
    known = ["abcd", "abcd-efgh-1234", "zz"]
    value = {"log": ["x abcd-efgh-1234 y", {"inner": "abcd only"}], "db_password": "p", "n": 3, "empty": ""}
    assert scrub.redact_structure(value, known) == {
        "log": ["x [REDACTED] y", {"inner": "[REDACTED] only"}],
        "db_password": "[REDACTED]",
        "n": 3,
        "empty": "",
    }
    assert scrub.is_secret_key("DB_Password") and scrub.is_secret_key("DB_Password") and not scrub.is_secret_key("n")
