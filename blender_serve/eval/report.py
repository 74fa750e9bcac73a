"""What ``eval`` writes: ``results.json``, a Markdown table shaped like the paper's, and three plots.

- ``wins.png``: the share of records each model wins on the primary metric (ties split), beside the
  share of the ranker's picks, so a ranker that favours one model shows at a glance;
- ``margin.png``: the ranker's top-1 - top-2 score margin, split by whether its top-1 was truly best
  (records whose candidates all score the same are left out: there, every pick is "best");
- ``comparisons.png``: quality against ranker comparisons per record, per strategy, between the
  random and oracle lines.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["write_report", "markdown_table", "method_order"]

_PERCENT = {"verify", "verify_all"}  # stored as shares 0..1, shown as %


def method_order(results: dict[str, Any]) -> list[str]:
    """Rows: single models (best first on the primary metric), random, ranker strategies, blender, oracles."""
    methods = results["methods"]
    primary = results.get("primary")
    sign = -1 if primary == "gpt_rank" else 1

    def key(name: str) -> float:
        v = methods[name].get(primary, math.nan) if primary else math.nan
        return -sign * v if v == v else math.inf

    singles = sorted((m for m in results["models"] if m in methods), key=key)
    rankers = [m for m in methods if m.startswith("ranker-")]
    oracles = [m for m in methods if m.startswith("oracle-")]
    partial = [m for m in methods if m.startswith("blender-fuse")]
    rest = [m for m in ("random",) if m in methods] + rankers + partial + [m for m in ("blender",) if m in methods]
    return singles + rest + oracles


def _fmt(metric: str, value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if metric in _PERCENT:
        return f"{100 * value:.1f}"
    return f"{value:.2f}"


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table: one row per method, metric columns, then GPT-Rank columns."""
    methods = results["methods"]
    metrics = [m for m in results["metrics"] if m != "gpt_rank"]
    primary = results.get("primary")
    if primary in metrics:
        metrics = [primary] + [m for m in metrics if m != primary]
    gpt_cols = []
    if "gpt_rank" in results["metrics"]:
        ge = [k for k in next(iter(methods.values())) if k.startswith("ge_")]
        # like the paper: "≥ X %" against the two best single models
        gpt_cols = ["gpt_rank"] + ge[:2] + ["top3"]
    header = ["method"] + [f"{m} %" if m in _PERCENT else m for m in metrics]
    header += [{"gpt_rank": "GPT-Rank ↓", "top3": "Top-3 %"}.get(c, f"≥{c[3:]} %") for c in gpt_cols] + ["n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in method_order(results):
        row = methods[name]
        cells = [f"**{name}**" if name == "blender" else name] + [_fmt(m, row.get(m)) for m in metrics]
        cells += [_fmt(c, row.get(c)) for c in gpt_cols] + [str(int(row.get("n", 0)))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plots(results, out: Path, records, values, strategy_results, picks) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    primary = results.get("primary")
    models = results["models"]
    if values is not None:
        wins = {m: 0.0 for m in models}
        ranked = {m: 0 for m in models}
        ranker_picks = picks.get("ranker-max_logits") or next((p for k, p in picks.items() if k.startswith("ranker-")), None)
        counted = 0
        for k, (r, vals) in enumerate(zip(records, values)):
            finite = [v for v in vals if not math.isnan(v)]
            if not finite:
                continue
            counted += 1
            best = max(finite)
            winners = [r.models[i] for i, v in enumerate(vals) if v == best]
            for w in winners:
                wins[w] += 1 / len(winners)
            if ranker_picks is not None and ranker_picks[k] is not None:
                ranked[r.models[ranker_picks[k]]] += 1
        if counted:
            fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(models)), 4))
            x = np.arange(len(models))
            ax.bar(x - 0.2, [100 * wins[m] / counted for m in models], 0.4, label=f"best on {primary} (ties split)")
            if ranker_picks is not None:
                ax.bar(x + 0.2, [100 * ranked[m] / counted for m in models], 0.4, label="picked by the ranker (max_logits)")
            ax.set_xticks(x, models, rotation=30, ha="right")
            ax.set_ylabel("% of records")
            ax.set_title("Which model wins each record")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out / "wins.png", dpi=110)
            plt.close(fig)
            written.append("wins.png")
    ml = strategy_results.get("max_logits")
    if ml is not None and values is not None:
        right, wrong = [], []
        for scores, vals, pick in zip(ml["scores"], values, ml["picks"]):
            if scores is None or pick is None or all(math.isnan(v) for v in vals):
                continue
            if np.nanmin(vals) == np.nanmax(vals):  # every candidate equal: no pick can be right or wrong
                continue
            top2 = np.sort(np.asarray(scores))[::-1][:2]
            best = np.nanmax(vals)
            (right if vals[pick] == best else wrong).append(float(top2[0] - top2[1]))
        if right or wrong:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.hist([right, wrong], bins=30, stacked=True, label=["top-1 is a best candidate", "top-1 is not"])
            ax.set_xlabel("ranker score margin, top-1 − top-2 (max_logits)")
            ax.set_ylabel("records")
            ax.set_title(f"Ranker confidence vs correctness on {primary}\n(records whose candidates differ on it)")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out / "margin.png", dpi=110)
            plt.close(fig)
            written.append("margin.png")
    if strategy_results and primary:
        methods = results["methods"]
        fig, ax = plt.subplots(figsize=(6, 4))
        for name in results["setup"]["strategies"]:
            row = methods.get(f"ranker-{name}")
            if row is None or name not in strategy_results:
                continue
            x, y = strategy_results[name]["comparisons"], row.get(primary, math.nan)
            ax.scatter([x], [y])
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4))
        for label, key, style in (("random", "random", ":"), ("oracle", f"oracle-{primary}", "--")):
            if key in methods and not math.isnan(methods[key].get(primary, math.nan)):
                ax.axhline(methods[key][primary], linestyle=style, color="grey")
                ax.annotate(label, (0, methods[key][primary]), xycoords=("axes fraction", "data"), fontsize=8)
        best_single = [methods[m].get(primary, math.nan) for m in results["models"] if m in methods]
        best_single = [v for v in best_single if not math.isnan(v)]
        if best_single:
            top = min(best_single) if primary == "gpt_rank" else max(best_single)
            ax.axhline(top, linestyle="-.", color="tab:red")
            ax.annotate("best single model", (0, top), xycoords=("axes fraction", "data"), fontsize=8, color="tab:red")
        ax.set_xlabel("ranker comparisons (forward passes) per record")
        ax.set_ylabel(primary + (" (lower is better)" if primary == "gpt_rank" else ""))
        ax.set_title("Quality against ranking cost")
        fig.tight_layout()
        fig.savefig(out / "comparisons.png", dpi=110)
        plt.close(fig)
        written.append("comparisons.png")
    return written


def write_report(results: dict[str, Any], out: Path, *, records=None, primary_values=None, strategy_results=None,
                 picks=None) -> None:
    """Write results.json, results.md and the plots into ``out``. The plots need the per-record data:
    ``primary_values[k][i]`` is candidate i of record k on the primary metric, signed so that higher
    is better (negated GPT ranks)."""
    out = Path(out)
    plots = (_plots(results, out, records, primary_values, strategy_results or {}, picks or {})
             if records and primary_values is not None else [])
    results["plots"] = plots
    (out / "results.json").write_text(json.dumps(results, indent=2, allow_nan=True, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    d = results["data"]
    lines = [f"# Evaluation of {d['path']}", "",
             f"{d['records']} records, {len(results['models'])} models, "
             f"{d['with_reference']} with a reference answer, {d['with_cmp_results']} with cmp_results. "
             f"Primary metric: {results.get('primary')}.", "", markdown_table(results),
             "Each metric is averaged over the records that have it (text metrics: records with a reference "
             "`output`; verify: records with verifiers); `n` counts the records a method answered. "
             "`blender-fuse<q>%` fuses only the q% of records with the smallest ranker margin and picks the "
             "ranker's top-1 elsewhere.", ""]
    sig = results.get("significance")
    if sig and sig.get("methods"):
        scale = 100.0 if sig["metric"] in _PERCENT else 1.0
        shown = [m for m in method_order(results) if m in sig["methods"] and m not in results["models"]]
        lines += [f"Against the best single model ({sig['baseline']}) on {sig['metric']}, same records, paired "
                  "bootstrap (delta > 0 is better; 95% interval):", ""]
        lines += [f"- {m}: {scale * sig['methods'][m]['delta']:+.2f} "
                  f"[{scale * sig['methods'][m]['ci95'][0]:+.2f}, {scale * sig['methods'][m]['ci95'][1]:+.2f}] "
                  f"over {sig['methods'][m]['n']} records" for m in shown]
        lines += [""]
    if results.get("ranker"):
        acc = results["ranker"].get("pairwise_accuracy") or {}
        if acc:
            lines += ["Ranker pairwise accuracy (both orders, ties in the target skipped): " +
                      ", ".join(f"{k} {v['accuracy']:.1f}% of {v['pairs']} pairs" for k, v in acc.items()), ""]
        lines += ["Comparisons per record: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                       results["ranker"]["comparisons_per_record"].items()), ""]
    lines += [f"![{p}]({p})" for p in plots]
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
