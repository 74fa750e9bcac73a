"""deploy/grafana/blender-serve.json is a well-formed Grafana dashboard, it charts every metric the
app exports (deployments/metrics.py) under the name Ray gives it, and the checker the serve tier
runs against Ray's real exporter (tests/serve/test_grafana_dashboard.py) catches a typo."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from blender_serve.testing.dashboard import (
    dashboard_exprs,
    iter_panels,
    load_dashboard,
    missing_series,
    promql_label_uses,
    promql_metric_names,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dashboard():
    return load_dashboard()


def _app_metric_names() -> set[str]:
    """What Ray's exporter calls deployments/metrics.py's metrics: a ray_ prefix; counters end in
    _total; a histogram is read as _bucket, _sum and _count."""
    source = (ROOT / "deployments" / "metrics.py").read_text()
    names = set()
    for kind, name in re.findall(r"\b(Counter|Histogram|Gauge)\(\s*\"(\w+)\"", source):
        names |= {"Counter": {f"ray_{name}_total"}, "Gauge": {f"ray_{name}"},
                  "Histogram": {f"ray_{name}_bucket", f"ray_{name}_sum", f"ray_{name}_count"}}[kind]
    assert len(names) >= 8, names  # the regex really read the file
    return names


def test_it_is_a_grafana_dashboard(dashboard):
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["application"]["datasource"]["uid"] == "${datasource}"
    panels = list(iter_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    charts = [p for p in panels if p["type"] != "row"]
    assert len(charts) >= 15
    for p in charts:
        assert p["title"] and p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], f"{p['title']}: no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
    boxes = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels}
    assert len(boxes) == len(panels), "two panels at the same place"


def test_every_expression_reads_ray_metrics_and_every_app_metric_is_charted(dashboard):
    app = _app_metric_names()
    read = set()
    for title, expr in dashboard_exprs(dashboard):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), title
        names = promql_metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        assert all(n.startswith(("ray_serve_", "ray_blender_")) for n in names), (title, names)
        assert all(n in app for n in names if n.startswith("ray_blender_")), f"{title}: {names - app} not exported by the app"
        read |= names
    assert {n for n in app if not n.endswith("_count")} <= read, f"app metrics not on the dashboard: {app - read}"
    assert len({n for n in read if n.startswith("ray_serve_")}) >= 10


@pytest.mark.parametrize("expr, names", [
    ('histogram_quantile(0.95, sum by (le, stage) (rate(a_bucket{application=~"$application"}[$__rate_interval])))',
     {"a_bucket"}),
    ('sum by (model) (rate(x_total{o="by (y)"}[5m])) / scalar(sum(rate(x_total[1h] offset 5m)))', {"x_total"}),
    ("sum(a) / ignoring(model) group_left b * on (job) c_total / 1e3 and bool d", {"a", "b", "c_total", "d"}),
    ("max by (deployment) (ray_serve_deployment_status)", {"ray_serve_deployment_status"}),
])
def test_metric_names_are_read_from_promql(expr, names):
    assert promql_metric_names(expr) == names


def test_label_uses_are_read_from_promql():
    matchers, grouping = promql_label_uses('sum by (le, stage) (rate(m_bucket{application=~"$a",outcome!="x"}[1m])) / n')
    assert matchers == {"m_bucket": {"application", "outcome"}} and grouping == {"le", "stage"}


def _exposition_of(dashboard) -> str:
    """A text exposition that has exactly what the dashboard reads (each metric with every label used)."""
    lines = []
    for _, expr in dashboard_exprs(dashboard):
        matchers, grouping = promql_label_uses(expr)
        for name in promql_metric_names(expr):
            labels = sorted(matchers.get(name, set()) | grouping)
            lines.append(name + "{" + ",".join(f'{k}="v"' for k in labels) + "} 1.0")
    return "# HELP something\n" + "\n".join(lines) + "\n"


def test_the_checker_catches_a_typo_and_a_wrong_label(dashboard):
    exposition = _exposition_of(dashboard)
    assert missing_series(dashboard, exposition) == []
    typo = json.loads(json.dumps(dashboard).replace("ray_blender_model_calls_total", "ray_blender_model_call_total", 1))
    assert any("ray_blender_model_call_total is not exported" in p for p in missing_series(typo, exposition))
    label = copy.deepcopy(dashboard)
    target = next(t for p in iter_panels(label) for t in p.get("targets", []) if "by (model)" in t["expr"])
    target["expr"] = target["expr"].replace("by (model)", "by (modle)")
    assert any("label 'modle'" in p for p in missing_series(label, exposition))
    matcher = json.loads(json.dumps(dashboard).replace('outcome=\\"fused\\"', 'outcom=\\"fused\\"'))
    assert any("has no label 'outcom'" in p for p in missing_series(matcher, exposition))
