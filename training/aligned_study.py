"""Refit the calibration with aligned verification and measure it against the shipped one.

    python -m training.aligned_study --calibration-data SYN1 --benchmark SYN0 \\
        --real ../shared/datasets/grocery-store --out docs/results/aligned-verification [--fusion linear] [--model-out FOLDER]

1. Every photo of the three datasets is scored by the shipped model with alignment (rows cached in
   ``--rows``, reused with ``--reuse``).
2. Signals are selected (``training.signal_selection``): fitted on the calibration set's train
   brands and half the real set's brands, judged on the calibration set's other brands and, cross-
   fitted, on the real set's other half.
3. The calibration is refitted on the whole calibration set and the whole real set with the chosen
   signals. Selection and refit are additive fusions (a monotone shape per signal, ``training.additive``;
   ``shapes.png`` draws the refit's) or, with ``--fusion linear``, a weight per signal.
4. Before (shipped calibration) and after are compared on the benchmark's brands (never used for
   fitting or selection; after: the refitted calibration) and on the real set (after: each brand
   scored by the fit on the calibration set and the real half without it): ROC-AUC with a paired
   bootstrap interval and TPR at 1% FPR, overall, per counterfeit kind and per severity.
   ``report.json``, ``report.md``, PNG; ``examples/<kind>.png``: benchmark photos beside their reference, with their heatmaps.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from detector import progress
from detector.evaluation.metrics import paired_auc_difference, roc_auc, tpr_at_fpr
from detector.evaluation.run import evaluate_rows
from detector.fsutil import atomic_write_bytes
from detector.model_folder import load_model
from detector.signals import ALIGNMENT_SIGNALS, signal
from training.benchmarks import Keep, genuine_and
from training.calibrate import FUSIONS, fit_calibration, write_calibrated_model
from training.signal_selection import cross_fitted, select_aligned_signals


def _rows(name: str, data: Path, model, folder: Path, reuse: bool) -> list[dict[str, Any]]:
    cached = folder / f"rows-{name}.json"
    if reuse and cached.is_file():
        return json.loads(cached.read_text())
    rows = evaluate_rows(data, model, align=True)
    atomic_write_bytes(cached, json.dumps(rows).encode())
    return rows


def _compare(scored: list[dict], keep) -> dict[str, Any]:
    """``before`` against ``after`` on every genuine photo and the counterfeits ``keep`` selects."""
    chosen = genuine_and(scored, keep)
    labels = [r["label"] for r in chosen]
    b, a = [r["before"] for r in chosen], [r["after"] for r in chosen]
    counterfeits = [r for r in chosen if r["label"] == 1]
    return {
        "n_counterfeit": len(counterfeits),
        "aligned_counterfeit_share": float(np.mean([bool(r["aligned"]) for r in counterfeits])) if counterfeits else None,
        "roc_auc_before": roc_auc(labels, b), "roc_auc_after": roc_auc(labels, a),
        "difference": paired_auc_difference(labels, a, b),
        "tpr_at_1pct_fpr_before": tpr_at_fpr(labels, b, 0.01), "tpr_at_1pct_fpr_after": tpr_at_fpr(labels, a, 0.01),
    }


def aligned_signal_aucs(rows: list[dict], groups: dict[str, Keep] | None = None) -> dict[str, dict[str, float | None]]:
    """Each alignment signal alone on the aligned photos (oriented: higher means counterfeit), per group of
    counterfeits (default: all, and each kind)."""
    aligned = [r for r in rows if r["aligned"]]
    if groups is None:
        kinds = sorted({r["kind"] for r in aligned if r["label"] == 1})
        groups = {"all": lambda r: True, **{k: (lambda r, k=k: r["kind"] == k) for k in kinds}}
    out = {}
    for name in sorted(ALIGNMENT_SIGNALS):
        per = {}
        for group, keep in groups.items():
            chosen = genuine_and(aligned, keep)
            per[group] = roc_auc([r["label"] for r in chosen], [signal(name).oriented(r[name]) for r in chosen])
        out[name] = per
    return out


def measure(rows: list[dict], before_calibration, after: list[float]) -> dict[str, Any]:
    """``after``: each row's score after (in ``rows``' order)."""
    scored = [{**r, "before": before_calibration.fuse(r), "after": score} for r, score in zip(rows, after)]
    genuine = [r for r in rows if r["label"] == 0]
    kinds = sorted({r["kind"] for r in rows if r["label"] == 1})
    severities = sorted({r["severity"] for r in rows if r["label"] == 1 and r["severity"]})
    return {
        "photos": len(rows),
        "aligned_genuine_share": float(np.mean([bool(r["aligned"]) for r in genuine])),
        "overall": _compare(scored, lambda r: True),
        "per_kind": {k: _compare(scored, lambda r, k=k: r["kind"] == k) for k in kinds},
        "per_severity_subtle_kinds": {s: _compare(scored, lambda r, s=s: r["severity"] == s and r["kind"] != "other_brand")
                                      for s in severities},
        "aligned_signal_roc_auc": aligned_signal_aucs(rows),
    }


def _markdown(report: dict[str, Any]) -> str:
    selection = report["selection"]
    lines = ["# Aligned verification: shipped calibration (before) against the refitted one (after)", "",
             f"Refit: {selection['fusion']} fusion. Chosen alignment signals: {selection['chosen'] or 'none'}. Selection (fitted on "
             f"{selection['fit_photos']} photos of the calibration set's train brands and half the real set's brands; "
             f"ROC-AUC on the calibration set's other brands' {selection['held_out_photos']} photos / on the real set, "
             "each half scored by the fit on the other):", "",
             f"- embedding fusion alone: {_num(selection['baseline']['held_out'])} / {_num(selection['baseline']['real'])}"]
    lines += [f"- with {', '.join([*step['with'], name])}: {_num(f['held_out'])} / {_num(f['real'])}"
              for step in selection["steps"] for name, f in step["tried"].items()]
    lines.append("")
    for name in ("benchmark", "real"):
        result = report[name]
        lines += [f"## {name}: {result['data']}", "",
                  f"{result['photos']} photos; genuine photos aligned: {result['aligned_genuine_share']:.0%}", "",
                  "| subset | counterfeits | aligned | ROC-AUC before | after | difference [95% CI] | TPR@1% before | after |",
                  "|---|---|---|---|---|---|---|---|"]
        groups = [("all", result["overall"])] + list(result["per_kind"].items()) + \
            [(f"severity {s} (subtle kinds)", v) for s, v in result["per_severity_subtle_kinds"].items()]
        for label, g in groups:
            d = g["difference"]
            ci = "n/a" if d["difference"] is None else f"{d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
            lines.append(f"| {label} | {g['n_counterfeit']} | {_pct(g['aligned_counterfeit_share'])} | {_num(g['roc_auc_before'])} | "
                         f"{_num(g['roc_auc_after'])} | {ci} | {_num(g['tpr_at_1pct_fpr_before'])} | {_num(g['tpr_at_1pct_fpr_after'])} |")
        table = result["aligned_signal_roc_auc"]
        columns = list(next(iter(table.values())))
        lines += ["", "Each alignment signal alone, on aligned photos only (ROC-AUC):", "",
                  "| signal | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(_num(v) for v in per.values()) + " |" for name, per in table.items()]
        lines.append("")
    return "\n".join(lines)


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _plot(out: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, name in zip(axes, ("benchmark", "real")):
        groups = {"all": report[name]["overall"], **report[name]["per_kind"]}
        x = np.arange(len(groups))
        ax.bar(x - 0.2, [g["roc_auc_before"] or 0 for g in groups.values()], 0.4, label="before (shipped)")
        ax.bar(x + 0.2, [g["roc_auc_after"] or 0 for g in groups.values()], 0.4, label="after (aligned)")
        ax.set_xticks(x, list(groups), rotation=30, ha="right")
        ax.set_ylim(0.4, 1.0)
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.set_title(f"{name}: ROC-AUC per counterfeit kind")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc_auc_per_kind.png", dpi=110)
    plt.close(fig)


def _plot_shapes(out: Path, calibration) -> None:
    """``shapes.png``: what each signal adds to the logit of a photo that aligned (none for a linear fusion)."""
    fusion = calibration.aligned or calibration.embedding_fusion
    if not fusion.shapes:
        (out / "shapes.png").unlink(missing_ok=True)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fusion.shapes), figsize=(3.2 * len(fusion.shapes), 3), squeeze=False)
    for ax, (name, shape) in zip(axes[0], fusion.shapes.items()):
        t = np.array(shape.thresholds)
        span = (t[-1] - t[0]) if len(t) > 1 else 1.0
        x = np.r_[t[0] - 0.1 * span, np.repeat(t, 2), t[-1] + 0.1 * span] if len(t) else np.array([0.0, 1.0])
        ax.plot(x, np.repeat(shape.values, 2), lw=1.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("signal value")
        ax.axhline(0, color="grey", lw=0.5)
    axes[0][0].set_ylabel("added to the logit")
    fig.tight_layout()
    fig.savefig(out / "shapes.png", dpi=110)
    plt.close(fig)


def stacked_png(tiles: list) -> bytes:
    """PIL images of one size, one under the other, as a PNG."""
    from PIL import Image

    sheet = Image.new("RGB", (tiles[0].width, sum(t.height for t in tiles)), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (0, i * tiles[0].height))
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def write_examples(out: Path, rows: list[dict], root: Path, calibration, *, per_kind: int = 3) -> list[str]:
    """``examples/<kind>.png``: for each kind, aligned photos at the median of that kind's scores and
    around it, each beside the reference it was compared with, its heatmap over it."""
    from PIL import Image, ImageDraw

    from detector.alignment.features import photo_view, reference_features
    from detector.alignment.heatmap import render_heatmap
    from detector.alignment.recipe import DEFAULT_RECIPE
    from detector.alignment.verify import verify
    from detector.images import load_image

    written = []
    for kind in sorted({r["kind"] for r in rows}):
        aligned = sorted((r for r in rows if r["kind"] == kind and r["aligned"]),
                         key=lambda r: calibration.fuse(r, aligned=True))
        if not aligned:
            continue
        middle = len(aligned) // 2
        picked = aligned[max(0, middle - per_kind // 2): middle - per_kind // 2 + per_kind]
        tiles = []
        for row in picked:
            reference = load_image((root / row["aligned_reference"]).read_bytes())
            photo_bytes = (root / row["path"]).read_bytes()
            v = verify(photo_view(load_image(photo_bytes), DEFAULT_RECIPE),
                       {0: reference_features(photo_view(reference, DEFAULT_RECIPE), DEFAULT_RECIPE)}, DEFAULT_RECIPE)
            overlay = Image.open(io.BytesIO(render_heatmap(photo_bytes, v.heatmap, v.box and list(v.box)))) \
                if v.aligned else load_image(photo_bytes)
            side = 256
            tile = Image.new("RGB", (2 * side, side + 34), "white")
            tile.paste(reference.resize((side, side)), (0, 0))
            tile.paste(overlay.resize((side, side)), (side, 0))
            score = calibration.fuse(row, aligned=True)
            ImageDraw.Draw(tile).text((4, side + 2), f"{row['path']} (severity {row['severity'] or '-'}), score {score:.2f}\n"
                                      f"{v.region or ''} {v.difference or ''}; block peak {row['aligned_block_peak']:.2f}",
                                      fill="black")
            tiles.append(tile)
        atomic_write_bytes(out / "examples" / f"{kind}.png", stacked_png(tiles))
        written.append(kind)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration-data", type=Path, required=True, help="a synthetic set with train/val/test brand splits")
    parser.add_argument("--benchmark", type=Path, required=True, help="a synthetic set of other brands, only measured")
    parser.add_argument("--real", type=Path, required=True, help="a set of real photos, for selection and measurement")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fusion", choices=FUSIONS, default="additive",
                        help="additive: a monotone shape per signal (default); linear: a weight per signal")
    parser.add_argument("--model-out", type=Path, default=None, help="write the refitted model folder here")
    parser.add_argument("--rows", type=Path, default=None, help="where the scored rows are cached (default: --out)")
    parser.add_argument("--reuse", action="store_true", help="reuse rows cached by an earlier run")
    args = parser.parse_args()
    progress.show_progress(True)
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model()
    rows = {name: _rows(name, path, model, args.rows or args.out, args.reuse)
            for name, path in (("calibration", args.calibration_data), ("benchmark", args.benchmark), ("real", args.real))}
    base = list(model.calibration.features)
    fit = [r for r in rows["calibration"] if r["split"] == "train"]
    held_out = [r for r in rows["calibration"] if r["split"] != "train"]
    selection = select_aligned_signals(fit, held_out, rows["real"], base=base, candidates=sorted(ALIGNMENT_SIGNALS),
                                       fusion=args.fusion)
    calibration = fit_calibration(
        rows["calibration"] + rows["real"], base, aligned_features=selection.chosen or None, fusion=args.fusion,
        notes=f"Fitted by: python -m training.aligned_study --calibration-data {args.calibration_data} --real {args.real} "
              f"--fusion {args.fusion} (every photo of both); alignment signals chosen by forward selection on the "
              f"calibration set's val/test brands and, cross-fitted, {args.real}. Class-balanced {args.fusion} logistic "
              "fusions; suspicious at 5% and counterfeit at 1% FPR on their genuine photos.")
    _, real_after = cross_fitted(rows["calibration"], rows["real"], base=base, aligned=selection.chosen, fusion=args.fusion)
    report = {
        "selection": {"fusion": args.fusion, "chosen": selection.chosen, "baseline": selection.baseline, "figures": selection.figures,
                      "steps": selection.steps, "fit_photos": len(fit), "held_out_photos": len(held_out)},
        "calibration": calibration.to_dict(),
        "benchmark": {"data": str(args.benchmark), **measure(
            rows["benchmark"], model.calibration, [calibration.fuse(r, aligned=bool(r["aligned"])) for r in rows["benchmark"]])},
        "real": {"data": str(args.real), **measure(rows["real"], model.calibration, real_after)},
    }
    atomic_write_bytes(args.out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    atomic_write_bytes(args.out / "report.md", _markdown(report).encode())
    _plot(args.out, report)
    _plot_shapes(args.out, calibration)
    write_examples(args.out, rows["benchmark"], args.benchmark, calibration)
    if args.model_out:
        write_calibrated_model(model, calibration, args.model_out)
    print(_markdown(report))


if __name__ == "__main__":
    main()
