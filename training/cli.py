"""Training's command groups for ``cfd`` (registered through the ``counterfeit_detector.commands``
entry point): ``cfd data synth``, ``cfd calibrate``, ``cfd train``."""

from __future__ import annotations

import sys

from detector.cli import add_command, add_group, load_model_from_args
from detector.errors import InvalidInputError


def cmd_data_synth(args) -> None:
    from training.synth.generate import SynthConfig, generate

    if args.brands < 2:
        raise InvalidInputError("--brands must be at least 2 (other_brand counterfeits need another brand)")
    if min(args.references, args.genuine, args.per_severity) < 1 or args.size < 64:
        raise InvalidInputError("--references, --genuine and --per-severity must be >= 1, --size >= 64")
    config = SynthConfig(brands=args.brands, seed=args.seed, references=args.references, genuine=args.genuine,
                         per_severity=args.per_severity, size=args.size)
    rows = generate(args.out, config, contact_sheet=args.contact_sheet)
    print(f"wrote {len(rows)} photos of {args.brands} brands to {args.out}", file=sys.stderr)


def cmd_calibrate(args) -> None:
    import json

    from detector.evaluation.run import evaluate_rows
    from training.calibrate import fit_calibration, validate_features, write_calibrated_model

    if args.per_brand:
        return _calibrate_per_brand(args)
    if args.data is None:
        raise InvalidInputError("--data is needed (or --per-brand, to refit brands' thresholds in a data directory)")
    model = load_model_from_args(args)
    features = args.features.split(",")
    aligned = args.aligned_features.split(",") if args.aligned_features else None
    validate_features(features, aligned, produced=model.config.signals)  # before the dataset is scored
    rows = evaluate_rows(args.data, model, align=aligned is not None)
    calibration = fit_calibration(rows, features, aligned_features=aligned, fusion=args.fusion,
                                  suspicious_fpr=args.suspicious_fpr, counterfeit_fpr=args.counterfeit_fpr,
                                  notes=args.notes or f"fitted on {args.data}")
    if args.out:
        print(f"wrote the model folder {write_calibrated_model(model, calibration, args.out)}", file=sys.stderr)
    print(json.dumps(calibration.to_dict(), indent=2))


def _calibrate_per_brand(args) -> None:
    """Refit each brand's thresholds on its genuine evidence in the data directory (detector.brand_calibration)."""
    import json

    from detector.brand_calibration import BrandCalibrator
    from detector.cli import resolve_data_dir
    from detector.runtime import open_runtime
    from detector.store import LOCAL_ACTOR

    args.data_dir, args.creates_data_dir = args.per_brand_data_dir, False
    resolve_data_dir(args)
    runtime = open_runtime(args.data_dir, load_model_from_args(args), reembed=args.reembed)
    calibrator = BrandCalibrator(runtime.detector)
    brands = args.brand or [b["brand"] for b in runtime.gallery.store.list_brands()]
    fitted, skipped = [], {}
    for brand in brands:
        try:
            fitted.append(calibrator.calibrate(brand, actor=LOCAL_ACTOR))
        except InvalidInputError as exc:
            if args.brand:  # a brand asked for by name must calibrate
                raise
            skipped[brand] = exc.message
    print(json.dumps({"calibrated": fitted, "skipped": skipped}, indent=2))


def cmd_train(args) -> None:
    from training.train import run_from_args

    run_from_args(args)


def register(commands) -> None:
    """Adds the training commands to ``cfd``'s sub-command registry."""
    from training.synth.generate import SynthConfig

    data = add_group(commands, "data", "datasets")
    p = add_command(data, "synth", cmd_data_synth, "generate the synthetic product-photo benchmark "
                    "(deterministic synthetic brands, genuine and counterfeit listing photos)", data_dir=False, model=False)
    p.add_argument("--out", required=True)
    p.add_argument("--brands", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--references", type=int, default=8, help="studio reference shots per brand")
    p.add_argument("--genuine", type=int, default=16, help="genuine listing photos per brand")
    p.add_argument("--per-severity", type=int, default=1, help="counterfeit photos per kind and severity")
    p.add_argument("--size", type=int, default=SynthConfig().size, help="image side in pixels")
    p.add_argument("--contact-sheet", action="store_true", help="also write contact_sheet.png")

    p = add_command(commands, "calibrate", cmd_calibrate, "fit a model's score fusion and thresholds on a dataset "
                    "(logistic fusion, thresholds at target FPRs)", data_dir=False)
    p.add_argument("--data", default=None, help="dataset to fit the model's calibration on")
    p.add_argument("--per-brand", action="store_true",
                   help="instead: refit each brand's thresholds in a data directory on its decided checks (or, "
                        "with too few, its references left out one at a time)")
    p.add_argument("--data-dir", dest="per_brand_data_dir", default=None,
                   help="with --per-brand: the data directory (default: $CFD_DATA_DIR, else ./var)")
    p.add_argument("--brand", action="append", default=None, help="with --per-brand: only this brand (repeatable)")
    p.add_argument("--reembed", action="store_true", help="with --per-brand: re-embed references another model made")
    p.add_argument("--features", default="brand_similarity,brand_margin", help="the embedding fusion's signals")
    p.add_argument("--aligned-features", default=None, metavar="SIGNALS",
                   help="alignment signals added to the embedding fusion for photos that align with a reference "
                        "(default: none, no aligned fusion)")
    p.add_argument("--fusion", choices=("linear", "additive"), default="linear",
                   help="linear: a weight per signal; additive: a monotone shape per signal, fitted by boosting")
    p.add_argument("--suspicious-fpr", type=float, default=0.05)
    p.add_argument("--counterfeit-fpr", type=float, default=0.01)
    p.add_argument("--out", default=None, metavar="FOLDER",
                   help="write a new model folder: the model's files with this calibration (never the model's own folder)")
    p.add_argument("--notes", default=None, help="provenance text stored in calibration.json")

    p = add_command(commands, "train", cmd_train, "fine-tune a model from a YAML recipe and export it to models/ "
                    "(key=value arguments override the recipe)", data_dir=False, model=False)
    p.add_argument("--config", required=True)
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. train.steps=50")
