"""Evaluation outputs: report.json and samples.csv for machines, ROC and score-histogram PNGs and
a Markdown summary for people."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from detector.evaluation.metrics import roc_curve


def write_report(out: Path, report: dict[str, Any], rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("brand", "path", "label", "kind"), k))
    with open(out / "samples.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    write_plots(out, rows, report)
    write_markdown(out / "report.md", report)


def write_plots(out: Path, rows: list[dict], report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    labels = np.array([r["label"] for r in rows])
    scores = np.array([r["score"] for r in rows], dtype=np.float64)
    genuine = labels == 0

    fig, ax = plt.subplots(figsize=(5.5, 5))
    kinds = sorted({r["kind"] for r in rows if r["label"] == 1})
    for kind in ["all"] + kinds:
        mask = genuine | (labels == 1) if kind == "all" else genuine | np.array([r["kind"] == kind for r in rows])
        if labels[mask].sum() == 0 or genuine.sum() == 0:
            continue
        fpr, tpr, _ = roc_curve(labels[mask], scores[mask])
        auc = report["overall"]["roc_auc"] if kind == "all" else report["per_kind"][kind]["roc_auc"]
        ax.plot(fpr, tpr, lw=2.2 if kind == "all" else 1.0, label=f"{kind} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(0, 1)
    ax.set_xlabel("false positive rate (genuine flagged)")
    ax.set_ylabel("true positive rate (counterfeit caught)")
    ax.set_title(f"ROC: {report['model']['name']}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 41)
    ax.hist(scores[genuine], bins=bins, alpha=0.6, label="genuine", density=True)
    ax.hist(scores[~genuine], bins=bins, alpha=0.6, label="counterfeit", density=True)
    for name, value in report["thresholds"].items():
        ax.axvline(value, color="k", ls="--", lw=0.8)
        ax.text(value, ax.get_ylim()[1] * 0.95, f" {name}", fontsize=7)
    ax.set_xlabel("counterfeit score")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "score_histogram.png", dpi=120)
    plt.close(fig)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(title: str, groups: dict[str, dict[str, Any]]) -> list[str]:
    if not groups:
        return []
    lines = [f"## {title}", "", "| group | n counterfeit | n genuine | ROC-AUC | AP | TPR@1%FPR | TPR@5%FPR |", "|---|---|---|---|---|---|---|"]
    for name, m in groups.items():
        lines.append(
            f"| {name} | {m['n_counterfeit']} | {m['n_genuine']} | {_fmt(m['roc_auc'])} | {_fmt(m['average_precision'])} "
            f"| {_fmt(m['tpr_at_1pct_fpr'])} | {_fmt(m['tpr_at_5pct_fpr'])} |"
        )
    return lines + [""]


def _realised_table(realised: dict[str, Any]) -> list[str]:
    """Realised rates at the shipped thresholds next to the calibration's targets; a brand whose genuine
    photos are flagged more often than the target is marked, so a mis-calibration shows."""
    targets = realised["targets"]
    lines = ["", "## Realised rates at the shipped thresholds",
             "", f"Targets of the calibration: genuine flagged {_fmt(targets['flagged_fpr'])}, "
                 f"genuine called counterfeit {_fmt(targets['counterfeit_fpr'])}.", "",
             "| group | genuine | genuine flagged | genuine called counterfeit | counterfeit | counterfeit flagged | "
             "counterfeit called counterfeit |", "|---|---|---|---|---|---|---|"]
    for name, r in [("all", realised["overall"]), *realised["per_brand"].items()]:
        over = targets["flagged_fpr"] is not None and r["flagged_fpr"] is not None and r["flagged_fpr"] > targets["flagged_fpr"]
        lines.append(f"| {name} | {r['n_genuine']} | {_fmt(r['flagged_fpr'])}{' (over target)' if over else ''} | "
                     f"{_fmt(r['counterfeit_fpr'])} | {r['n_counterfeit']} | {_fmt(r['flagged_tpr'])} | {_fmt(r['counterfeit_tpr'])} |")
    return lines


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    o = report["overall"]
    lines = [
        f"# Evaluation: {report['model']['name']} {report['model']['version']}",
        "",
        f"Dataset `{report['dataset']}`: {report['brands']} brands, {report['references']} references, "
        f"{o['n_genuine']} genuine and {o['n_counterfeit']} counterfeit listing photos.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| ROC-AUC | {_fmt(o['roc_auc'])} |",
        f"| average precision | {_fmt(o['average_precision'])} |",
        f"| TPR at 1% FPR | {_fmt(o['tpr_at_1pct_fpr'])} |",
        f"| TPR at 5% FPR | {_fmt(o['tpr_at_5pct_fpr'])} |",
        "",
    ]
    lines += _table("Per counterfeit kind (against all genuine photos)", report["per_kind"])
    lines += _table("Per severity (against all genuine photos)", report["per_severity"])
    lines += _table("Per split", report["per_split"])
    lines += _table("Per brand", report["per_brand"])
    t = report["thresholds"]
    lines += [f"## Confusion at the shipped thresholds (suspicious {t['suspicious']}, counterfeit {t['counterfeit']})", "",
              "| true \\ verdict | genuine | suspicious | counterfeit |", "|---|---|---|---|"]
    for label, row in report["confusion"].items():
        lines.append(f"| {label} | {row.get('genuine', 0)} | {row.get('suspicious', 0)} | {row.get('counterfeit', 0)} |")
    lines += _realised_table(report["realised"])
    lines += ["", "![ROC](roc.png)", "", "![score histogram](score_histogram.png)", ""]
    path.write_text("\n".join(lines))
