"""The Grafana dashboard in deploy/grafana: well-formed, and every metric it plots exists."""

import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboard.json"
# Grafana's own panel types this dashboard may use (a typo makes an empty "unknown" panel).
PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "table", "bargauge", "heatmap"}
SERIES_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")
PROMQL_WORDS = {"sum", "max", "min", "rate", "histogram_quantile"}


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_has_the_shape_grafana_imports() -> None:
    dashboard = load()

    assert dashboard["title"] and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard  # Grafana assigns it; a fixed one clashes on import
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y"))
        assert grid["x"] + grid["w"] <= 24  # Grafana's grid is 24 columns wide
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs))
        for target in panel.get("targets", []):
            # Every $variable the panel uses is defined ($__ ones are Grafana's own).
            used = set(re.findall(r"\$(?!__)(\w+)", target["expr"])) | set(
                re.findall(r"\$\{(\w+)\}", json.dumps(panel["datasource"]))
            )
            assert used <= variables, used - variables
    assert expressions(dashboard)


def test_every_plotted_metric_is_exported(client: TestClient) -> None:
    client.get("/health")
    exported = set(re.findall(r"^# TYPE (\w+) ", client.get("/metrics").text, re.MULTILINE))

    for expr in expressions(load()):
        # Label matchers, ranges, strings and groupings name no metric.
        without_labels = re.sub(r"\{[^}]*\}|\[[^]]*\]|\"[^\"]*\"|\bby \([^)]*\)", "", expr)
        for name in set(re.findall(r"\b[a-z_]+\b", without_labels)) - PROMQL_WORDS:
            family = next((name.removesuffix(s) for s in SERIES_SUFFIXES if name.endswith(s)), name)
            assert {name, family} & exported, f"{name} in {expr!r} is not on /metrics"
