"""Korean throughout, English only by choice.

- The English catalogue (governance/locale/en) covers every msgid in the code and the
  templates: the extraction is run afresh into a copy, so a new string without an English
  translation, or a fuzzy guess, fails here.
- The msgids are Korean (one msgid language across apps), bar a few acronyms.
- Key pages rendered in Korean show none of the machine names that used to leak: role
  keys, status codes, routing codes, audit action names, Django's English "required".
- The same pages in English come from the catalogue.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from audit import labels as audit_labels
from governance import services
from governance.models import Notification
from governance.text import shorten
from tests.factories import file_task, governance_world

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "governance" / "locale"
HANGUL = re.compile(r"[\uac00-\ud7a3]")
# msgids that are the same in both languages: acronyms, and Django admin's own "Home".
NOT_KOREAN_ON_PURPOSE = {"ID", "OS", "SSH", "PM", "HTTP", "HTTPS", "CSV", "JSON", "URL", "API", "Home"}
IGNORED_DIRS = [".venv", "tests", "bench", "docs", "scripts", "static", "seed", "var", "node_modules"]


def _po_entries(text: str) -> list[dict]:
    """msgid/msgstr/flags of each entry of a .po file (enough of the format for a check)."""
    entries = []
    for block in re.split(r"\n\s*\n", text.strip()):
        entry = {"flags": "", "msgid": "", "msgid_plural": None, "msgstr": []}
        key = None
        for line in block.splitlines():
            if line.startswith("#,"):
                entry["flags"] += line
            match = re.match(r'^(msgid_plural|msgid|msgstr(?:\[\d+\])?) (".*")$', line)
            if match:
                key = match.group(1)
                value = eval(match.group(2))  # a C-style quoted string from our own catalogue
                if key.startswith("msgstr"):
                    entry["msgstr"].append(value)
                else:
                    entry[key] = value
            elif line.startswith('"') and key:
                value = eval(line)
                if key.startswith("msgstr"):
                    entry["msgstr"][-1] += value
                else:
                    entry[key] = (entry[key] or "") + value
        if entry["msgid"]:
            entries.append(entry)
    return entries


@pytest.fixture(scope="module")
def fresh_catalogue(tmp_path_factory) -> list[dict]:
    """makemessages run now over the code and templates, merged into a copy of the catalogue."""
    if not shutil.which("msgmerge"):
        pytest.fail("gettext tools (msgmerge, msgfmt) are required: apt-get install gettext")
    locale = tmp_path_factory.mktemp("catalogue") / "locale"
    shutil.copytree(CATALOGUE, locale)
    cwd = Path.cwd()
    try:
        import os

        os.chdir(REPO)
        with override_settings(LOCALE_PATHS=[str(locale)]):
            call_command(
                "makemessages",
                locale=["en"],
                no_location=True,
                no_obsolete=True,
                verbosity=0,
                ignore_patterns=[*IGNORED_DIRS, "governance/locale"],
            )
    finally:
        os.chdir(cwd)
    return _po_entries((locale / "en" / "LC_MESSAGES" / "django.po").read_text(encoding="utf-8"))


def test_every_msgid_in_code_and_templates_has_an_english_translation(fresh_catalogue):
    assert len(fresh_catalogue) > 300  # the extraction found the project's strings
    missing = [e["msgid"] for e in fresh_catalogue if not all(s.strip() for s in e["msgstr"])]
    fuzzy = [e["msgid"] for e in fresh_catalogue if "fuzzy" in e["flags"]]
    hint = "no English translation (scripts/makemessages.sh, translate in the .po, run it again):\n"
    assert not missing, hint + "\n".join(missing)
    assert not fuzzy, "fuzzy entries:\n" + "\n".join(fuzzy)


def test_msgids_are_korean(fresh_catalogue):
    english = [
        e["msgid"] for e in fresh_catalogue if not HANGUL.search(e["msgid"]) and e["msgid"] not in NOT_KOREAN_ON_PURPOSE
    ]
    assert not english, "English msgids (write the msgid in Korean, the English in the catalogue):\n" + "\n".join(
        english
    )


def test_compiled_catalogue_is_current():
    """The committed .mo is the compiled .po (msgfmt output matches byte for byte)."""
    po = CATALOGUE / "en" / "LC_MESSAGES" / "django.po"
    compiled = subprocess.run(["msgfmt", "--check-format", "-o", "-", str(po)], capture_output=True, check=True)
    assert compiled.stdout == (CATALOGUE / "en" / "LC_MESSAGES" / "django.mo").read_bytes()


# --- rendered pages ----------------------------------------------------------------------------

# Machine names that must not reach a Korean page as text.
LEAKS = [
    r"\bowner\b",
    r"\bpm\b",
    r"\bsecurity_officer\b",
    r"\bteam_lead\b",
    r"\bsite_manager\b",
    r"\bsupervisor\b",
    r"\brequired\b",
    r"This field",
    r"\bRECEIVED\b",
    r"\bPARSED\b",
    r"\bPENDING_APPROVAL\b",
    r"\[DIRECT\]",
    r"\bDIRECT\b",
    r"\bAPPROVED\b",
    r"task\.transition",
    r"task\.submitted",
    r"approval\.assigned",
    r"approval\.decided",
    r"auth\.login",
    r"audit\.verify",
    r"\bseq\b",
    r"\bok\b",
    r"\bapproval\b(?!s)",
    r"\bnotification\b",
]


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S | re.I)
    html = re.sub(r"<code\b.*?</code>", " ", html, flags=re.S | re.I)  # hashes and machine codes on purpose
    return unescape(re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def korean_world(db, django_capture_on_commit_callbacks):
    world = governance_world(owner_username="kim.lead")
    # Usernames that are not role keys, so a role key found on a page is a leak.
    for person, name in (
        (world.pm, "park_jh"),
        (world.supervisor, "lee_sh"),
        (world.auditor, "choi_ms"),
        (world.deputy, "jung_dy"),
    ):
        person.username = name
        person.save()
    with django_capture_on_commit_callbacks(execute=False):
        world.task = file_task(world, title="메모리 점검", targets=world.servers[:1])
        step = services.my_approvals(world.owner).get(task=world.task)
        world.task.refresh_from_db()
        services.decide_step(world.owner, step.pk, "APPROVED", "확인했습니다", plan_sha256=world.task.plan_sha256)
        world.second = file_task(world, title="두 번째 점검", targets=world.servers[:1])
    return world


def pages(world) -> list[tuple[object, str]]:
    task = world.task.task_id
    return [
        (world.owner, reverse("console:dashboard")),
        (world.owner, reverse("console:task", args=[task])),
        (world.owner, reverse("console:task", args=[world.second.task_id])),
        (world.owner, reverse("console:approvals")),
        (world.owner, reverse("console:inbox")),
        (world.owner, reverse("console:owner_settings")),
        (world.owner, reverse("console:statistics")),
        (world.requester, reverse("console:inbox")),
        (world.requester, reverse("console:search") + "?q=OPS"),
        (world.auditor, reverse("audit:entries") + f"?task={task}"),
        (world.auditor, reverse("audit:entries") + "?action=auth.login"),
        (world.auditor, reverse("audit:verify")),
        (world.auditor, reverse("audit:export") + "?format=exe"),
    ]


def assert_no_leak(where: str, html: str) -> None:
    text = visible_text(html)
    found = {pattern: m.group(0) for pattern in LEAKS if (m := re.search(pattern, text))}
    assert not found, f"{where}: English/machine names on a Korean page: {found}"


def test_key_pages_in_korean_show_no_machine_names(client, korean_world):
    assert Notification.objects.filter(user=korean_world.owner).exists()
    for user, url in pages(korean_world):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code in (200, 400), url
        assert_no_leak(f"{user} {url}", response.content.decode())
    client.force_login(korean_world.auditor)
    verified = client.post(reverse("audit:verify")).content.decode()
    assert "정상" in verified
    assert_no_leak("verify result", verified)


def test_timeline_uses_korean_labels_for_roles_statuses_and_routing(client, korean_world):
    client.force_login(korean_world.owner)
    page = visible_text(client.get(reverse("console:task", args=[korean_world.task.task_id])).content.decode())
    assert "시스템 담당자" in page  # the approval step's role
    assert "승인 대기" in page and "[직접]" in page
    assert "요청 접수" in page


def test_form_errors_are_korean(client, korean_world):
    client.force_login(korean_world.requester)
    url = reverse("console:new_request")
    response = client.post(url, {"system": korean_world.system.pk, "sub_type": "MEMORY_CHECK", "title": ""})
    page = response.content.decode()
    assert "필수 항목입니다" in page
    assert_no_leak("new request with errors", page)
    client.force_login(korean_world.owner)
    response = client.post(
        reverse("console:owner_settings"),
        {"system": korean_world.system.pk, "deputy": korean_world.requester.pk},
        follow=True,
    )
    assert "대리 승인자로 지정할 수 있습니다" in response.content.decode()


def test_admin_model_and_column_names_are_korean(client, korean_world):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="kang.admin", role="admin", is_staff=True))
    page = visible_text(client.get("/admin/cmdb/server/").content.decode())
    assert "서버 (TB_SERVER_INFO)" in page and "서버 ID" in page and "호스트명" in page
    assert not re.search(r"\bserver id\b|\bhostname\b", page, re.I)
    page = visible_text(client.get("/admin/cmdb/systemowner/").content.decode())
    assert "대리 승인자" in page and "상급자" in page
    assert not re.search(r"\bdeputy\b|\bsupervisor\b", page, re.I)


def test_english_by_choice_comes_from_the_catalogue(client, korean_world):
    client.force_login(korean_world.auditor)
    client.post("/i18n/setlang/", {"language": "en", "next": "/audit/"})
    page = visible_text(client.get(reverse("audit:entries")).content.decode())
    assert "Audit log" in page and "Request filed" in page
    leftover = HANGUL.search(re.sub(r"기획재정부|예산시스템|메모리 점검|두 번째 점검|확인했습니다|한국어", "", page))
    assert not leftover, page[max(0, leftover.start() - 100) : leftover.end() + 100]


def test_every_action_written_by_the_code_has_a_korean_label():
    """An action name written as a literal anywhere in the apps shows as a Korean label."""
    written = set()
    for path in REPO.glob("*/**/*.py"):
        if path.parts[len(REPO.parts)] in (".venv", "tests", "bench", "docs", "scripts"):
            continue
        text = path.read_text(encoding="utf-8")
        written |= set(re.findall(r"""(?:record|audit_task)\(\s*[^,()]+,\s*["']([a-z_]+\.[a-z_]+)["']""", text))
    assert len(written) > 20
    unlabelled = sorted(a for a in written if audit_labels.action_label(a) == a)
    assert not unlabelled, f"actions without a Korean label in audit/labels.py: {unlabelled}"


def test_audit_labels_cover_the_actions_written():
    assert audit_labels.action_label("auth.login") == "로그인"
    assert audit_labels.action_label("cmdb.server_change") == "CMDB 서버 변경"
    assert audit_labels.result_label("broken:modified") == "손상: 변조"
    assert audit_labels.action_label("some.future_action") == "some.future_action"  # never hidden


@pytest.mark.parametrize(
    "text, limit, expected",
    [
        ("승인 요청: OPS-20260523-001 예산시스템 WAS 배포 요청이 접수되었습니다", 30, "승인 요청: OPS-20260523-001…"),
        ("짧은 알림", 30, "짧은 알림"),
        ("줄바꿈이\n있는   알림도 한 줄로", 40, "줄바꿈이 있는 알림도 한 줄로"),
        ("x" * 50, 20, "x" * 19 + "…"),
    ],
)
def test_notification_text_is_cut_at_a_word_boundary(text, limit, expected):
    shortened = shorten(text, limit)
    assert shortened == expected and len(shortened) <= limit


from tests.execution.conftest import clean_testbed, testbed, testbed_cmdb  # noqa: E402,F401 - session testbed

ENGLISH_FAILURE = [
    r"not answering",
    r"\bserves\b",
    r"\bexpected\b",
    r"refused before",
    r"nothing was changed",
    r"rolling back",
    r"\brestored\b",
    r"rollback failed",
    r"stopped (before|during|at)\b",
    r"no new process",
    r"MB free",
    r"timed out",
]


@pytest.mark.testbed
def test_failed_deploy_task_page_has_no_english_failure_sentence(client, testbed_cmdb):  # noqa: F811
    """A real deploy that rolls back on the testbed (any file, 1.1.0 typed as the version): the
    reason, the per-server table and the timeline on its task page are Korean."""
    from execution.services import run_task, store_artifact
    from tests.execution.engine_helpers import approved_task
    from tests.factories import UserFactory

    servers = sorted(testbed_cmdb, key=lambda s: s.server_id)[:2]
    artifact = store_artifact(b"PK-not-really-a-war " + b"#" * 512, "app.war")
    task = approved_task(
        servers, parameters={"artifact_sha256": artifact["sha256"], "version": "1.1.0", "rollout": {"canary_share": 0}}
    )
    assert run_task(task.pk) == "FAILED_ROLLED_BACK"
    client.force_login(UserFactory(username="translations-pm", role="pm"))
    text = visible_text(client.get(reverse("console:task", args=[task.task_id])).content.decode())
    assert "버전을 제공합니다 (기대 1.1.0)" in text and "롤백 완료" in text
    found = {pattern: m.group(0) for pattern in ENGLISH_FAILURE if (m := re.search(pattern, text))}
    assert not found, f"English failure text on the task page: {found}"
