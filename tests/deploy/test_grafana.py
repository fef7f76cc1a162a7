"""deploy/grafana/dimee.json works against whichever Prometheus a Grafana has: one `datasource` variable of type
prometheus, and every panel and query asks it, never a datasource uid of one installation."""

from __future__ import annotations

import json
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dimee.json"


def _datasources(node: object) -> list[object]:
    """Every `datasource` field anywhere in the dashboard (panels, their queries, nested rows)."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "datasource"] + [d for v in node.values() for d in _datasources(v)]
    if isinstance(node, list):
        return [d for v in node for d in _datasources(v)]
    return []


def test_every_panel_asks_the_datasource_variable_and_none_pins_a_uid():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert panels and all(p.get("datasource") for p in panels) and all(t.get("datasource") for p in panels
                                                                      for t in p["targets"])
    found = _datasources(panels)
    assert found and all(d == {"type": "prometheus", "uid": "${datasource}"} for d in found), [
        d for d in found if d != {"type": "prometheus", "uid": "${datasource}"}]
