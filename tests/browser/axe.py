"""axe-core in the browser tests: the copy pinned in package-lock.json (node_modules, put
there by scripts/setup.sh with npm ci), injected into each page by Playwright. Nothing is
fetched from a CDN; the page under test never references it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AXE_JS = REPO / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0 and 2.1, levels A and AA: what KWCAG 2.2 is based on.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

RUN = """
async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return {
    version: axe.version,
    violations: result.violations.map(v => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + " :: "
        + (n.failureSummary || "").split("\\n").slice(0, 3).join(" ")),
    })),
  };
}
"""


def axe_script() -> Path:
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: run scripts/setup.sh (npm ci installs the pinned axe-core)")
    return AXE_JS


def install(context) -> None:
    """Every page the context opens gets axe-core before its own scripts (an init script is
    not subject to the page's Content-Security-Policy)."""
    context.add_init_script(path=str(axe_script()))


def violations(page) -> list[str]:
    """The WCAG 2.1 A/AA violations on the page as it is now, one line per rule."""
    result = page.evaluate(RUN, WCAG_TAGS)
    assert result["version"].startswith("4."), result["version"]
    return [f"{v['id']} ({v['impact']}): {v['help']} — " + " | ".join(v["nodes"]) for v in result["violations"]]
