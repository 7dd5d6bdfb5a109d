"""The alert rules are valid, fire on the series their unit tests give them, and each has a runbook section; the
dashboard is well-formed. (Whether they name metrics the services export is checked against a live scrape in
tests/e2e/test_observability.py.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = ROOT / ".chime" / "prometheus" / "usr" / "bin" / "promtool"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL.exists(), "promtool is missing: `make install` unpacks it into .chime/prometheus"
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, cwd=RULES.parent, timeout=60)


def test_promtool_checks_the_rules() -> None:
    done = _promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_cover_at_least_three_alerts() -> None:
    tests = yaml.safe_load((RULES.parent / "alerts.test.yaml").read_text())
    covered = {case["alertname"] for t in tests["tests"] for case in t["alert_rule_test"] if case["exp_alerts"]}
    assert len(covered) >= 3, covered
    done = _promtool("test", "rules", "alerts.test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_runbook_section() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", operations, re.M)
    }
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: docs/operations.md has no section #{anchor}"
        assert rule["labels"]["severity"] in ("page", "ticket")


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "chime.json").read_text())
    assert dashboard["uid"] and dashboard["templating"]["list"][0]["type"] == "datasource"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert "chime_" in target["expr"]
