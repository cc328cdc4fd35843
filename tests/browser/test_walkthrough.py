"""The README's walk-through, step by step as it is written, in Debian chromium at a desktop and
a phone viewport, against the demo stack (seed_demo users, real sshd testbed, Daphne, Redis,
the django-q2 worker):

sitemgr downloads the sample WAR for 1.1.0 from the new-request page and files an APP_DEPLOY
for NIA-TESTBED with that version typed in; teamlead2 and pm approve under "내 승인"; the task
page follows the deploy live; the PM page shows every target serving 1.1.0 with its health
checks; pm validates; auditor verifies the chain. Screenshots of each role's main pages go
to docs/screenshots/.
"""

from __future__ import annotations

import re
import zipfile

import pytest

from tests.browser import demo_stack as ui

pytestmark = [pytest.mark.browser, pytest.mark.testbed]

VERSION = "1.1.0"
TARGETS = ["srv-01", "srv-02", "srv-03"]


def served_versions(demo) -> dict[str, str]:
    """What the testbed's WAS stand-ins answer right now, read straight from their health URLs."""
    import json

    status = json.loads(subprocess_out(demo, "testbed", "status", "--json"))
    return {row["server_id"]: row["version"] for row in status["servers"]}


def subprocess_out(demo, *args: str) -> str:
    return ui.manage(demo.env, *args)


@pytest.mark.parametrize("viewport", [ui.DESKTOP, ui.PHONE], ids=["desktop", "phone"])
def test_readme_walkthrough(demo, chromium, viewport, tmp_path):
    from playwright.sync_api import expect

    tag = "desktop" if viewport is ui.DESKTOP else "phone"
    before = served_versions(demo)
    base = demo.base_url
    contexts = {name: ui.new_context(chromium, viewport) for name in ("sitemgr", "teamlead2", "pm", "auditor")}
    try:
        # 1. sitemgr: the sample artifact for 1.1.0, downloaded from the new-request page.
        field = ui.login(contexts["sitemgr"], base, "sitemgr")
        field.goto(f"{base}/console/requests/new/")
        field.select_option(
            "#pick-system", field.locator("#pick-system option", has_text="NIA-TESTBED").get_attribute("value")
        )
        field.click("#system-picker button[type=submit]")  # a select changes nothing until confirmed
        field.wait_for_selector("#new-request-form")
        field.fill("#id_version", VERSION)
        link = field.locator("#demo-artifact-link")
        expect(link).to_have_text(f"guardia-demo-{VERSION}.war")
        with field.expect_download() as download:
            link.click()
        war = tmp_path / "app.war"
        download.value.save_as(war)
        with zipfile.ZipFile(war) as archive:
            assert f"Implementation-Version: {VERSION}" in archive.read("META-INF/MANIFEST.MF").decode()

        # ...and files the APP_DEPLOY with that artifact and the version typed in.
        field.fill("#id_title", f"테스트베드 WAS {VERSION} 배포 ({tag})")
        for server_id in TARGETS:
            field.locator("#targets label", has_text=re.compile(rf"\b{server_id}\b")).locator("input").check()
        field.set_input_files("#id_artifact", str(war))
        if tag == "desktop":
            ui.screenshot(field, "sitemgr-new-request")
        field.click("#submit-request")
        field.wait_for_url(re.compile(r".*/console/tasks/OPS-[0-9-]+/$"))
        task_id = field.url.rstrip("/").rsplit("/", 1)[1]
        expect(field.locator("#task-status")).to_have_text("승인 대기")
        ui.wait_live(field)
        ui.mark_document(field)

        # 2. teamlead2 (the testbed system's owner), then pm, approve under "내 승인".
        for approver in ("teamlead2", "pm"):
            page = ui.login(contexts[approver], base, approver)
            page.goto(f"{base}/console/approvals/")
            card = page.locator("article", has_text=task_id)
            expect(card).to_be_visible()
            if tag == "desktop" and approver == "teamlead2":
                ui.screenshot(page, "teamlead2-approvals")
            card.locator("textarea[name=comments]").fill(f"{approver} 확인")
            card.locator("button[value=APPROVED]").click()
            expect(page.locator(".messages")).to_contain_text(task_id)
            page.close()

        # 3. The task page follows the deploy live, without a reload.
        expect(field.locator("#task-status")).to_have_text("PM 검증 대기", timeout=90_000)
        assert ui.same_document(field)
        expect(field.locator("#timeline li.live", has_text="teamlead2 확인")).to_have_count(1)
        expect(field.locator("#timeline li.live", has_text="srv-01").first).to_be_visible()
        ui.screenshot(field, f"sitemgr-task-live-{tag}")

        # 4. The servers really serve 1.1.0.
        after = served_versions(demo)
        assert {sid: after[sid] for sid in TARGETS} == dict.fromkeys(TARGETS, VERSION)

        # 5. pm: the result package, per server, with the versions before and after.
        pm = contexts["pm"].new_page()  # pm is still logged in from the approval
        pm.goto(f"{base}/console/")
        expect(pm.locator("#validation-prompt")).to_contain_text("검증 대기")
        ui.screenshot(pm, f"pm-dashboard-{tag}")
        pm.goto(f"{base}/console/tasks/{task_id}/validate/")
        expect(pm.locator("#result-counts")).to_contain_text("대상 3대 · 성공 3대 · 실패 0대")
        expect(pm.locator("#result-counts")).to_contain_text("버전 문제 없음")
        expect(pm.locator("#expected-version")).to_have_text(VERSION)
        for server_id in TARGETS:
            row = pm.locator(f"#server-{server_id}")
            expect(row.locator(".served-version")).to_have_text(VERSION)
            expect(row).to_contain_text(before[server_id])  # the version served before
            expect(row).to_contain_text("HTTP 200")
            expect(row).to_contain_text("성공")
            assert row.get_attribute("data-version-problem") is None
        ui.screenshot(pm, f"pm-validate-{tag}")
        pm.fill("#id_comments", "결과 확인")
        pm.click("#validation-form button[value=approve]")
        expect(pm.locator("#task-status")).to_have_text("완료")

        # 6. auditor: the chain verifies.
        auditor = ui.login(contexts["auditor"], base, "auditor")
        auditor.goto(f"{base}/audit/")
        if tag == "desktop":
            ui.screenshot(auditor, "auditor-audit")
        auditor.goto(f"{base}/audit/verify/")
        auditor.click("#verify-button")
        expect(auditor.locator("#verify-result.ok")).to_contain_text("정상")
        if tag == "desktop":
            ui.screenshot(auditor, "auditor-verify")
    except Exception:
        for name, context in contexts.items():
            for index, page in enumerate(context.pages):
                page.screenshot(path=str(demo.logs / f"failure-{tag}-{name}-{index}.png"), full_page=True)
                (demo.logs / f"failure-{tag}-{name}-{index}.html").write_text(page.content())
        raise
    finally:
        for context in contexts.values():
            context.close()


def test_a_wrong_version_rolls_back_and_the_pm_page_would_say_why(demo):
    """The version check the README explains: an artifact whose MANIFEST says 9.9.9 filed as
    1.1.0 is refused by the health check on the server and rolled back."""
    from governance.demo_artifact import build_war

    task = ui.file_deploy(
        demo, "sitemgr", title="버전 불일치 확인", targets=["srv-04"], version=VERSION, artifact=build_war("9.9.9")
    )
    assert task["status"] == "PENDING_APPROVAL", task
    ui.approve(demo, "teamlead2", task["task_id"])
    ui.approve(demo, "pm", task["task_id"])
    final = ui.wait_settled(demo, task["task_id"])
    assert final["status"] == "FAILED_ROLLED_BACK", final
    assert "9.9.9 버전을 제공합니다 (기대 1.1.0)" in final["failure_reason"], final
    assert served_versions(demo)["srv-04"] != "9.9.9"
