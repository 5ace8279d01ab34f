"""How far aligned comparison goes once registration is perfect.

    python -m training.aligned_ceiling --out docs/results/aligned-ceiling \\
        [--seed 0 --brands 12 --per-severity 1] [--rows ROWS/rows-benchmark.json]

For every counterfeit photo of the synthetic set ``cfd data synth`` writes with these arguments
(other_brand aside), ``training.synth.twins`` gives its genuine twin (the same photo of the genuine
item) and a reference at the photo's exact pose (another genuine item, on a studio background). Both
photos are compared with that reference by the shipped comparison (``detector.alignment.compare``)
under the identity homography: registration is perfect; light, blur, noise, occluders, JPEG and the
items' manufacturing tolerance stay as in the benchmark. Each alignment signal's ROC-AUC (the
counterfeits of a kind or severity against every genuine twin) is what it scores once registration is
no longer in question. ``--rows`` (an aligned study's rows of the same set) sets the pipeline's
figures on its aligned photos beside it.

What the defect leaves in the photo is measured too: the pixels where the counterfeit photo differs
from its genuine twin (same noise, same everything else) by more than a colour difference dE. A
counterfeit whose photo differs in fewer than a few dozen pixels is, in its photo, the genuine item. If
a share f of a group's counterfeits is, no score ranks them above genuine photos but by chance, and
the group's ROC-AUC is at most 1 - f/2 (the bound in the report, at two thresholds of dE).
``report.json``, ``report.md``, ``ceiling.png`` and ``examples.png``.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from detector import progress
from detector.alignment.compare import compare
from detector.alignment.features import photo_view, reference_features
from detector.alignment.recipe import DEFAULT_RECIPE
from detector.evaluation.metrics import auc_interval
from detector.fsutil import atomic_write_bytes
from detector.images import load_image
from detector.signals import ALIGNMENT_SIGNALS, signal
from training.aligned_study import aligned_signal_aucs, stacked_png
from training.benchmarks import Keep
from training.synth.defects import KINDS, SEVERITIES
from training.synth.generate import SynthConfig
from training.synth.twins import Twins, counterfeit_twins

# A photo's visible change: pixels whose Lab colour (both photos smoothed by SMOOTH px, as the comparison
# smooths noise) differs by more than a dE of VISIBLE_DELTA_E; under INVISIBLE_SHARE of the photo's pixels (26 of a
# 512 px photo) the defect is not in the photo. dE 10 is the strict reading, 5 (about the smoothed noise) the lenient one.
SMOOTH = 1.5
VISIBLE_DELTA_E = (5.0, 10.0)
INVISIBLE_SHARE = 1e-4


def _decoded(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _lab(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.GaussianBlur(bgr.astype(np.float32) / 255, (0, 0), SMOOTH), cv2.COLOR_BGR2LAB)


def defect_map(twins: Twins) -> np.ndarray:
    """Per pixel, the Lab difference between the counterfeit photo and its genuine twin: the defect as
    the photo shows it."""
    return np.linalg.norm(_lab(_decoded(twins.counterfeit)) - _lab(_decoded(twins.genuine)), axis=2)


def measure_twins(twins: Twins) -> dict[str, Any]:
    """The shipped comparison of the counterfeit and of its genuine twin with the reference at their
    pose (identity homography), and the defect's visible pixels."""
    reference = reference_features(photo_view(load_image(twins.reference), DEFAULT_RECIPE), DEFAULT_RECIPE)
    signals = {}
    for name, data in (("counterfeit", twins.counterfeit), ("genuine", twins.genuine)):
        photo = photo_view(load_image(data), DEFAULT_RECIPE)
        compared = compare(photo, reference, np.diag([reference.view.scale / photo.scale] * 2 + [1.0]), DEFAULT_RECIPE)
        signals[name] = compared.signals if compared is not None else None
    defect = defect_map(twins)
    return {"path": twins.path, "brand": twins.brand, "kind": twins.kind, "severity": twins.severity, "photo_pixels": defect.size,
            "visible_pixels": {f"{t:g}": int((defect > t).sum()) for t in VISIBLE_DELTA_E}, **signals}


def _groups(kinds) -> dict[str, Keep]:
    """All counterfeits, each kind's, each severity's (a study's rows keep severities as text)."""
    return {"all": lambda p: True, **{k: (lambda p, k=k: p["kind"] == k) for k in sorted(kinds)},
            **{f"severity {s}": (lambda p, s=s: str(p["severity"]) == str(s)) for s in SEVERITIES}}


def ceiling(pairs: list[dict]) -> dict[str, Any]:
    """Per group (all, kind, severity): each signal's ROC-AUC with a 95% interval, counterfeits against
    every genuine twin (pairs the comparison could not measure are left out), and the defect's visibility."""
    compared = [p for p in pairs if p["counterfeit"] is not None and p["genuine"] is not None]
    genuine = [p["genuine"] for p in compared]
    names = sorted(genuine[0]) if genuine else []
    out = {}
    for group, keep in _groups({p["kind"] for p in compared}).items():
        members = [p for p in compared if keep(p)]
        counterfeit = [p["counterfeit"] for p in members]
        labels = [0] * len(genuine) + [1] * len(counterfeit)
        per_signal = {n: auc_interval(labels, [signal(n).oriented(s[n]) for s in genuine + counterfeit]) for n in names}
        best = max(names, key=lambda n: per_signal[n]["roc_auc"] or 0.0) if counterfeit else None
        visibility = {}
        for t in VISIBLE_DELTA_E:
            visible = np.array([p["visible_pixels"][f"{t:g}"] for p in members])
            invisible = float((visible < INVISIBLE_SHARE * np.array([p["photo_pixels"] for p in members])).mean()) \
                if len(visible) else None
            visibility[f"{t:g}"] = {"invisible_share": invisible, "auc_bound": None if invisible is None else 1 - invisible / 2,
                                    "median_visible_pixels": float(np.median(visible)) if len(visible) else None}
        out[group] = {"counterfeits": len(members), "best_signal": best, "signals": per_signal, "visibility": visibility}
    return out


def pipeline_aucs(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """The pipeline's own figures on the set (an aligned study's rows): each signal alone on the photos that
    aligned, per group of subtle counterfeits."""
    subtle = [r for r in rows if r["kind"] != "other_brand"]
    return aligned_signal_aucs(subtle, _groups({r["kind"] for r in subtle if r["label"] == 1}))


def _markdown(report: dict[str, Any]) -> str:
    lines = ["# The shipped comparison with perfect registration", "",
             f"Set: `cfd data synth` with {report['config']}; {report['pairs']} counterfeit photos (other_brand aside), "
             f"{report['compared']} compared with both twins. Counterfeits of each group against all "
             f"{report['compared']} genuine twins.", "",
             f"Invisible: the counterfeit photo differs from its genuine twin by more than dE 10 (or 5) in fewer than "
             f"{INVISIBLE_SHARE:.2%} of its pixels. Bound: the highest ROC-AUC any score can reach if invisible counterfeits are "
             "ranked as genuine photos are (1 - invisible share / 2). Best signal: the comparison's signal with the "
             "highest ROC-AUC in the group (chosen on the same photos, so a little optimistic); pipeline: the same "
             "signal of the shipped pipeline on the benchmark's photos that aligned.", "",
             "| group | counterfeits | visible px (median, dE 10) | invisible dE 10 / 5 | bound dE 10 / 5 | best signal | "
             "ROC-AUC [95% CI] | pipeline, aligned photos |",
             "|---|---|---|---|---|---|---|---|"]
    pipeline = report.get("pipeline") or {}
    for group, g in report["ceiling"].items():
        best = g["best_signal"]
        auc = g["signals"][best] if best else None
        figure = "n/a" if not auc or auc["roc_auc"] is None else \
            f"{auc['roc_auc']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]"
        own = pipeline.get(best, {}).get(group)
        strict, lenient = g["visibility"]["10"], g["visibility"]["5"]
        lines.append(f"| {group} | {g['counterfeits']} | {strict['median_visible_pixels']:.0f} | "
                     f"{strict['invisible_share']:.0%} / {lenient['invisible_share']:.0%} | "
                     f"{strict['auc_bound']:.3f} / {lenient['auc_bound']:.3f} | {best} | {figure} | "
                     f"{'n/a' if own is None else f'{own:.3f}'} |")
    return "\n".join(lines) + "\n"


def _plot(out: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {k: v for k, v in report["ceiling"].items() if v["best_signal"]}
    pipeline = report.get("pipeline") or {}
    x = np.arange(len(groups))
    best = [g["signals"][g["best_signal"]] for g in groups.values()]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    ax.bar(x - 0.2, [b["roc_auc"] for b in best], 0.4, label="perfect registration (best signal)",
           yerr=np.array([[b["roc_auc"] - b["ci95"][0], b["ci95"][1] - b["roc_auc"]] for b in best]).T, capsize=3)
    own = [pipeline.get(g["best_signal"], {}).get(k) for k, g in groups.items()]
    if any(v is not None for v in own):
        ax.bar(x + 0.2, [v or 0 for v in own], 0.4, label="pipeline, aligned photos (same signal)")
    ax.axhline(0.9, color="red", lw=0.8, ls="--", label="goal for each kind (0.90)")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set_xticks(x, [f"{k}\n{g['best_signal'].replace('aligned_', '')}" for k, g in groups.items()], fontsize=8)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("ROC-AUC")
    ax.set_title("The shipped comparison with perfect registration, against the pipeline")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ceiling.png", dpi=110)
    plt.close(fig)


def _examples(out: Path, chosen: list[Twins], pairs: dict[str, dict]) -> None:
    """``examples.png``: per subtle kind, a severity-3 counterfeit: the reference at its pose, the genuine twin,
    the counterfeit, and the defect as the photo shows it (difference to the twin, dE x 8)."""
    from PIL import ImageDraw

    side, rows = 200, []
    for twins in chosen:
        tiles = [Image.open(io.BytesIO(data)).convert("RGB").resize((side, side))
                 for data in (twins.reference, twins.genuine, twins.counterfeit)]
        heat = np.clip(defect_map(twins) * 8, 0, 255).astype(np.uint8)
        tiles.append(Image.fromarray(heat).convert("RGB").resize((side, side)))
        row = Image.new("RGB", (4 * side, side + 16), "white")
        for i, tile in enumerate(tiles):
            row.paste(tile, (i * side, 0))
        p = pairs[twins.path]
        ImageDraw.Draw(row).text((4, side + 2), f"{twins.path} (severity {twins.severity}): {p['visible_pixels']['10']} px differ by dE > 10; "
                                 "reference at pose | genuine twin | counterfeit | defect", fill="black")
        rows.append(row)
    if not rows:
        return
    atomic_write_bytes(out / "examples.png", stacked_png(rows))


def run(config: SynthConfig, out: Path, pipeline_rows: list[dict] | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    pairs, examples = [], {}
    total = config.brands * (len(KINDS) - 1) * len(SEVERITIES) * config.per_severity  # other_brand has no twin
    with progress.bar(total=total, desc="comparing twins") as bar:
        for twins in counterfeit_twins(config):
            pairs.append(measure_twins(twins))
            if twins.severity == max(SEVERITIES) and twins.kind not in examples:
                examples[twins.kind] = twins
            bar.update(1)
    groups = ceiling(pairs)
    report = {"config": {k: v for k, v in asdict(config).items() if k in ("seed", "brands", "per_severity", "size")},
              "pairs": len(pairs), "compared": groups["all"]["counterfeits"],
              "ceiling": groups, "pipeline": pipeline_aucs(pipeline_rows) if pipeline_rows else None, "photos": pairs}
    atomic_write_bytes(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    atomic_write_bytes(out / "report.md", _markdown(report).encode())
    _plot(out, report)
    _examples(out, [examples[k] for k in sorted(examples)], {p["path"]: p for p in pairs})
    return report


def _study_rows(parser: argparse.ArgumentParser, path: Path) -> list[dict]:
    """An aligned study's rows, or the parser's error (a clear message, exit 2)."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        parser.error(f"--rows {path}: not a readable JSON file ({exc})")
    needed = {"aligned", "kind", "label", "severity"}
    if not isinstance(rows, list) or not all(isinstance(r, dict) and needed <= r.keys() for r in rows) or \
            not all(ALIGNMENT_SIGNALS <= r.keys() for r in rows if r["aligned"]):
        parser.error(f"--rows {path}: not an aligned study's rows (a list of rows with {', '.join(sorted(needed))}, "
                     "and the alignment signals where aligned)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=SynthConfig.seed)
    parser.add_argument("--brands", type=int, default=SynthConfig.brands)
    parser.add_argument("--per-severity", type=int, default=SynthConfig.per_severity)
    parser.add_argument("--rows", type=Path, default=None,
                        help="rows-benchmark.json of an aligned study on the set these arguments write: the pipeline's figures")
    args = parser.parse_args()
    if min(args.brands, args.per_severity) < 1:
        parser.error("--brands and --per-severity must be >= 1")
    rows = _study_rows(parser, args.rows) if args.rows else None
    progress.show_progress(True)
    report = run(SynthConfig(brands=args.brands, seed=args.seed, per_severity=args.per_severity), args.out, rows)
    print(_markdown(report))


if __name__ == "__main__":
    main()
