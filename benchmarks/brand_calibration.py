"""Per-brand calibration on real photos: the realised false-positive rate at the model's shipped
thresholds against each brand's own, and what each catches of the counterfeits.

    python benchmarks/brand_calibration.py --data ../shared/datasets/grocery-store

Every brand's references go into one data directory; every genuine and counterfeit photo is
checked (and stored) against the brand it claims, as the service does (without alignment: the
shipped calibration does not read its signals, so scores are the same). Then:
- before: verdicts at the model's thresholds;
- leave-one-out: each brand calibrated with ``BrandCalibrator`` on its references alone (no
  decisions), the evidence a brand has on day one; its genuine photos were never seen;
- decided genuine: the fit the calibrator runs on a brand's decided genuine checks, with each
  genuine photo held out in turn (fitted on the brand's other genuine photos, measured on it);
  the fit on all of them is checked once against ``BrandCalibrator`` on real decisions.
Targets: the model's (5% flagged, 1% counterfeit). Writes JSON and a PNG per-brand plot.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import dataset_gallery  # noqa: E402
from detector import progress, thresholds  # noqa: E402
from detector.brand_calibration import BrandCalibrator  # noqa: E402
from detector.checks import Decision  # noqa: E402
from detector.errors import InvalidInputError  # noqa: E402
from detector.evaluation.dataset import load_dataset  # noqa: E402
from detector.gallery import UploadFile  # noqa: E402
from detector.model_folder import load_model  # noqa: E402
from detector.pipeline import Detector  # noqa: E402


def _rates(rows: list[dict], limits: dict[str, tuple[float, float]]) -> dict[str, float]:
    genuine = [r for r in rows if r["label"] == 0]
    fakes = [r for r in rows if r["label"] == 1]

    def share(subset, which):
        return float(np.mean([r["score"] >= limits[r["brand"]][which] for r in subset])) if subset else float("nan")

    return {"flagged_fpr": share(genuine, 0), "counterfeit_fpr": share(genuine, 1), "flagged_tpr": share(fakes, 0),
            "counterfeit_tpr": share(fakes, 1), "n_genuine": len(genuine), "n_counterfeit": len(fakes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    progress.show_progress(True)
    dataset = load_dataset(args.data)
    model = load_model()
    model_limits = (model.calibration.suspicious_threshold, model.calibration.counterfeit_threshold)
    targets = thresholds.targets_of(model.calibration)
    with tempfile.TemporaryDirectory() as workdir:
        gallery = dataset_gallery(workdir, dataset, model)
        detector = Detector(model, gallery, align=False)
        rows = []
        with progress.bar(total=len(dataset.samples), desc="checking listing photos") as bar:
            for sample in dataset.samples:
                result = detector.check([UploadFile(sample.path.name, sample.path.read_bytes())], brand=sample.brand)
                rows.append({"brand": sample.brand, "label": sample.label, "kind": sample.kind, "score": result.counterfeit_score,
                             "check_id": result.check_id})
                bar.update(1)

        calibrator = BrandCalibrator(detector)
        loo_limits, loo_detail = {}, {}
        for brand in dataset.brands:
            try:
                report = calibrator.calibrate(brand, actor="benchmark")
            except InvalidInputError as exc:
                loo_detail[brand] = {"skipped": exc.message}
                loo_limits[brand] = model_limits
                continue
            loo_limits[brand] = (report["calibration"]["suspicious_threshold"], report["calibration"]["counterfeit_threshold"])
            loo_detail[brand] = {"references": report["calibration"]["genuine_photos"], "thresholds": loo_limits[brand]}

        by_brand = defaultdict(list)
        for r in rows:
            by_brand[r["brand"]].append(r)
        held_out, decided_limits = [], {}
        for brand, members in by_brand.items():
            genuine = [r for r in members if r["label"] == 0]
            scores = np.array([r["score"] for r in genuine])
            for i, r in enumerate(genuine):  # each genuine photo judged by thresholds fitted without it
                fitted, _ = thresholds.fit(np.delete(scores, i), targets=targets, source="decisions")
                held_out.append({**r, "limits": (fitted.suspicious, fitted.counterfeit)})
            fitted, _ = thresholds.fit(scores, targets=targets, source="decisions")
            decided_limits[brand] = (fitted.suspicious, fitted.counterfeit)
        # the same fit through real decisions and the calibrator, for one brand
        probe = dataset.brands[0]
        for r in by_brand[probe]:
            if r["label"] == 0:
                gallery.checks.decide(r["check_id"], Decision("genuine"), actor="benchmark")
        through_calibrator = calibrator.calibrate(probe, actor="benchmark")["calibration"]
        # check scores are answered rounded to 4 decimals
        assert abs(through_calibrator["suspicious_threshold"] - decided_limits[probe][0]) < 1e-3, (through_calibrator, decided_limits[probe])
        gallery.close()

    model_rates = _rates(rows, defaultdict(lambda: model_limits))
    loo_rates = _rates(rows, loo_limits)
    decided_genuine = {k: v for k, v in _rates(
        [{**r, "brand": i} for i, r in enumerate(held_out)], {i: r["limits"] for i, r in enumerate(held_out)}).items()
        if "fpr" in k or k == "n_genuine"}
    decided_tpr = {k: v for k, v in _rates([r for r in rows if r["label"] == 1], decided_limits).items() if "tpr" in k or k == "n_counterfeit"}
    per_brand = {}
    for brand, members in sorted(by_brand.items()):
        held = [r for r in held_out if r["brand"] == brand]
        per_brand[brand] = {"model": _rates(members, defaultdict(lambda: model_limits)),
                            "leave_one_out": _rates(members, loo_limits),
                            "decided_genuine_held_out": {
                                "flagged_fpr": float(np.mean([r["score"] >= r["limits"][0] for r in held])),
                                "counterfeit_fpr": float(np.mean([r["score"] >= r["limits"][1] for r in held]))}}
    summary = {"data": str(args.data), "targets": {"flagged_fpr": targets[0], "counterfeit_fpr": targets[1]},
               "model_thresholds": {"suspicious": model_limits[0], "counterfeit": model_limits[1]},
               "model": model_rates, "leave_one_out": {**loo_rates, "brands": loo_detail},
               "decided_genuine": {**decided_genuine, **decided_tpr}, "per_brand": per_brand}
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"brand_calibration_{args.data.name}"
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(args.out / f"{name}.png", per_brand, targets)
    for label in ("model", "leave_one_out", "decided_genuine"):
        r = summary[label]
        print(f"{label:16s} flagged FPR {r['flagged_fpr']:.3f}  counterfeit FPR {r['counterfeit_fpr']:.3f}  "
              f"flagged TPR {r['flagged_tpr']:.3f}  counterfeit TPR {r['counterfeit_tpr']:.3f}")
    print(f"wrote {args.out / name}.json/.png")


def _plot(path: Path, per_brand: dict, targets: tuple[float, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    brands = list(per_brand)
    x = np.arange(len(brands))
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for offset, (key, label) in zip((-0.27, 0, 0.27), (("model", "model's thresholds"), ("leave_one_out", "brand: leave-one-out"),
                                                      ("decided_genuine_held_out", "brand: decided genuine (held out)"))):
        ax.bar(x + offset, [per_brand[b][key]["flagged_fpr"] for b in brands], width=0.27, label=label)
    ax.axhline(targets[0], color="black", linestyle="--", linewidth=1, label=f"target {targets[0]:.0%}")
    ax.set_xticks(x, brands, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("genuine flagged")
    ax.set_title("share of each brand's genuine photos flagged (suspicious or worse)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
