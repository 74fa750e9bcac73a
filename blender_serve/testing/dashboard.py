"""Checks of deploy/grafana/blender-serve.json against what Ray really exports: the metric names
(and the labels) every PromQL expression of the dashboard reads, and a Prometheus text exposition
parsed into series. Pure text processing; no Prometheus, no Grafana.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

__all__ = ["DASHBOARD", "load_dashboard", "iter_panels", "dashboard_exprs", "promql_metric_names",
           "promql_label_uses", "parse_exposition", "missing_series"]

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "blender-serve.json"

_NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"
# Words of PromQL that look like metric names but are not (functions are told by the "(" after them).
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
             "unless", "inf", "nan", "start", "end"}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def load_dashboard(path: Path = DASHBOARD) -> dict:
    return json.loads(Path(path).read_text())


def iter_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, those nested in collapsed rows too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """``(panel title, PromQL expression)`` for every target of every panel."""
    return [(p.get("title", ""), t["expr"]) for p in iter_panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def _strip(expr: str) -> str:
    """The expression without strings, Grafana variables, label matchers, ranges and grouping lists."""
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\$\{?\w+\}?", "0", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    return _GROUPING.sub(" ", expr)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads.

    Example::

        promql_metric_names('sum by (le) (rate(a_bucket{x="y"}[5m])) / scalar(b)')  # {"a_bucket", "b"}
    """
    stripped = _strip(expr)
    names = set()
    for m in re.finditer(rf"(?<![\w.:]){_NAME}", stripped):
        word = m.group()
        if word.lower() in _KEYWORDS or stripped[m.end():].lstrip().startswith("("):
            continue  # a keyword, or a function's name
        names.add(word)
    return names


def promql_label_uses(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """``({metric: label names in its matchers}, label names of by/without/on/ignoring lists)``."""
    no_strings = _STRING.sub('""', re.sub(r"\$\{?\w+\}?", "0", expr))
    matchers: dict[str, set[str]] = {}
    for m in re.finditer(rf"({_NAME})\s*\{{([^}}]*)\}}", no_strings):
        matchers.setdefault(m.group(1), set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", m.group(2)))
    grouping = {label.strip() for g in _GROUPING.finditer(no_strings) for label in g.group(2).split(",") if label.strip()}
    return matchers, grouping


def parse_exposition(text: str) -> dict[str, set[str]]:
    """A Prometheus text exposition as ``{sample name: the label names its series carry}``."""
    series: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = re.match(rf"({_NAME})(\{{.*\}})?\s", line)
        if m is None or line.startswith("#"):
            continue
        labels = set(re.findall(r'(\w+)="', m.group(2) or ""))
        series.setdefault(m.group(1), set()).update(labels)
    return series


def missing_series(dashboard: dict, exposition: str) -> list[str]:
    """What the dashboard reads that the exposition lacks: one line per missing metric name, label of
    a matcher, or grouping label (``by (...)``) that no metric of its expression carries."""
    series = parse_exposition(exposition)
    problems = []
    for title, expr in dashboard_exprs(dashboard):
        names = promql_metric_names(expr)
        problems += [f"{title}: metric {name} is not exported" for name in sorted(names) if name not in series]
        matchers, grouping = promql_label_uses(expr)
        for name, labels in matchers.items():
            if name in series:
                problems += [f"{title}: {name} has no label {label!r}" for label in sorted(labels - series[name])]
        present = set().union(*(series.get(n, set()) for n in names)) if names else set()
        if names <= set(series):
            problems += [f"{title}: no metric of {sorted(names)} has label {label!r}" for label in sorted(grouping - present)]
    return problems
