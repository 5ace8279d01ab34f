"""``cfd``: manage brands and references, check listings, evaluate, serve.

User mistakes print ``error: ...`` on stderr and exit 1 (argparse usage errors exit 2); no
tracebacks. Installed packages add command groups through the ``counterfeit_detector.commands``
entry-point group: each entry is a function that receives the sub-command registry (training's
``training.cli:register`` adds ``data``, ``calibrate`` and ``train``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from importlib.metadata import entry_points
from typing import Callable, Sequence

from detector import progress
from detector.memory import keep_freed_memory
from detector.precision import PRECISIONS
from detector.database import is_postgres_url
from detector.errors import DetectorError, InvalidInputError
from detector.evaluation.dataset import IMAGE_SUFFIXES
from detector.store import DB_FILE, LOCAL_ACTOR, MAX_ID, Store, store_location

DEFAULT_DATA_DIR = "./var"
DATA_DIR_VARIABLE = "CFD_DATA_DIR"
DATABASE_VARIABLE = "CFD_DATABASE"
CHUNK = 32
log = logging.getLogger("detector.cli")
COMMAND_GROUP = "counterfeit_detector.commands"


def _print_json(data) -> None:
    print(json.dumps(data, indent=2))


def _expand_files(paths: Sequence[str]) -> list[Path]:
    """Files as given, and image files found under any folder given."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidInputError(f"{raw}: no such file or folder")
    if not files:
        raise InvalidInputError("no image files were given")
    return files


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read ({exc.strerror})") from None


def load_model_from_args(args):
    """The model named by ``--model`` (default: the built-in zero-shot model) at ``--precision``."""
    from detector.model_folder import load_model

    return load_model(args.model, precision=args.precision)


def _runtime(args, *, align: bool = True):
    from detector.runtime import open_runtime

    return open_runtime(args.data_dir, load_model_from_args(args), reembed=args.reembed, align=align, database=args.database)


def _store(args):
    return Store(store_location(args.data_dir, args.database))


def resolve_data_dir(args) -> None:
    """``--data-dir``, else ``$CFD_DATA_DIR``, else ./var; only commands that set one up may create it.
    ``--database``, else ``$CFD_DATABASE``: a PostgreSQL URL in place of the data directory's SQLite file
    (the data directory then holds the originals and derived files, shared by every replica)."""
    args.data_dir = Path(args.data_dir or os.environ.get(DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR)
    args.database = getattr(args, "database", None) or os.environ.get(DATABASE_VARIABLE) or None
    if args.database is not None and not is_postgres_url(args.database):
        raise InvalidInputError(f"--database takes a postgresql:// URL (without it, the data directory's {DB_FILE} is used)")
    where = args.data_dir.resolve()
    exists = args.data_dir.is_dir() if args.database else (args.data_dir / DB_FILE).is_file()
    if not exists:
        if not args.creates_data_dir:
            raise InvalidInputError(f"no data directory at {where}{'' if args.database else f' (no {DB_FILE})'}; pass "
                                    f"--data-dir or set {DATA_DIR_VARIABLE}, or create one with 'cfd brands add' or 'cfd serve'")
        print(f"creating a new data directory at {where}", file=sys.stderr)
    log.info("data directory: %s", where)


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


reference_id = _bounded_int(1, MAX_ID)


# --- brands ---

def cmd_brands_add(args) -> None:
    store = _store(args)
    _print_json(store.create_brand(args.brand, args.display_name))


def cmd_brands_list(args) -> None:
    _print_json({"brands": _store(args).list_brands()})


def cmd_brands_remove(args) -> None:
    runtime = _runtime(args)
    runtime.gallery.delete_brand(args.brand)
    runtime.gallery.save_index()
    print(f"removed brand {args.brand}", file=sys.stderr)


# --- references ---

def cmd_references_add(args) -> None:
    from detector.gallery import UploadFile
    from detector.images import load_image

    files = _expand_files(args.files)
    _store(args).require_brand(args.brand)
    # Validate every file before loading the model or storing any, so a bad file is reported at once
    # and leaves the gallery unchanged.
    for path in files:
        load_image(_read(path), name=str(path))
    runtime = _runtime(args)
    added = []
    with progress.bar(total=len(files), desc=f"adding references to {args.brand}") as bar:
        for start in range(0, len(files), CHUNK):
            chunk = [UploadFile(str(p), _read(p)) for p in files[start : start + CHUNK]]
            added += runtime.gallery.add_references(args.brand, chunk, product=args.product)
            bar.update(len(chunk))
    runtime.gallery.save_index()
    _print_json({"references": [r.to_dict() for r in added]})


def cmd_references_list(args) -> None:
    refs = _store(args).list_references(args.brand, limit=args.limit + 1, after=args.after)
    page = refs[: args.limit]  # one more than the page says whether a next page exists, as the API does
    _print_json({"references": [r.to_dict() for r in page], "next": page[-1].id if len(refs) > args.limit else None})


def cmd_references_remove(args) -> None:
    runtime = _runtime(args)
    for ref_id in args.ids:
        runtime.gallery.delete_reference(args.brand, ref_id)
    runtime.gallery.save_index()
    print(f"removed {len(args.ids)} reference(s) from {args.brand}", file=sys.stderr)


# --- check, index, evaluate ---

def cmd_check(args) -> None:
    from detector.gallery import UploadFile

    if args.heatmap and not args.alignment:
        raise InvalidInputError("--heatmap needs alignment: drop --no-alignment")
    if args.heatmap:
        _writable_folder(Path(args.heatmap), option="--heatmap")  # before the model loads and the photos are checked
    files = [UploadFile(str(p), _read(p)) for p in _expand_files(args.files)]
    runtime = _runtime(args, align=args.alignment)
    result = runtime.detector.check(files, brand=args.brand, listing_id=args.listing_id)
    if args.heatmap:
        _write_heatmaps(Path(args.heatmap), files, result)
    _print_json(result.model_dump())


def _writable_folder(folder: Path, *, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"{option} {folder}: cannot be used as a folder ({exc.strerror})") from None


def _write_heatmaps(folder: Path, files, result) -> None:
    """``photo-<index>.png`` for each photo that aligned with a reference."""
    from detector.alignment.heatmap import render_heatmap
    from detector.fsutil import atomic_write_bytes

    written = 0
    for image in result.images:
        if image.alignment is not None and image.alignment.aligned:
            png = render_heatmap(files[image.index].data, image.alignment.heatmap, image.alignment.suspicious_box)
            atomic_write_bytes(folder / f"photo-{image.index}.png", png)
            written += 1
    print(f"wrote {written} heatmap(s) to {folder}" + ("" if written == len(result.images) else
          f"; {len(result.images) - written} photo(s) did not align, so they have none"), file=sys.stderr)


def cmd_index_rebuild(args) -> None:
    runtime = _runtime(args)
    count = runtime.gallery.rebuild_index()
    print(f"index rebuilt with {count} references", file=sys.stderr)


def cmd_evaluate(args) -> None:
    from detector.evaluation.run import evaluate

    report = evaluate(args.data, load_model_from_args(args), out_dir=args.out, align=args.align)
    _print_json({"overall": report["overall"], "per_kind": {k: v["roc_auc"] for k, v in report["per_kind"].items()},
                 "at_shipped_thresholds": {**report["realised"]["overall"], "targets": report["realised"]["targets"]},
                 "report_dir": args.out})


# --- stored checks, decisions, export ---

def _check_log(args):
    from detector.blobs import BlobStore
    from detector.checks import CheckLog
    from detector.datalock import DataDirLock
    from detector.gallery import IMAGES_DIR

    store = _store(args)
    return CheckLog(store, BlobStore(Path(args.data_dir) / IMAGES_DIR), DataDirLock(Path(args.data_dir)))


def cmd_checks_list(args) -> None:
    from detector.checks import CheckFilter

    page, cursor = _check_log(args).list(
        CheckFilter(brand=args.brand, verdict=args.verdict, decision=args.decision, since=args.since, until=args.until),
        limit=args.limit, before=args.before)
    _print_json({"checks": page, "next": cursor})


def cmd_checks_show(args) -> None:
    _print_json(_check_log(args).get(args.id))


def cmd_checks_decide(args) -> None:
    from detector.checks import Decision

    _print_json(_check_log(args).decide(args.id, Decision(args.decision, args.kind, args.note), actor=LOCAL_ACTOR))


def cmd_checks_prune(args) -> None:
    deleted = _check_log(args).prune(older_than_days=args.older_than_days, actor=LOCAL_ACTOR)
    print(f"deleted {deleted} undecided check(s) older than {args.older_than_days} days", file=sys.stderr)


def cmd_checks_rescore(args) -> None:
    from detector.rescore import rescore_brand

    runtime = _runtime(args)
    _print_json(rescore_brand(runtime.detector, args.brand, actor=LOCAL_ACTOR))


def _batch_job(args):
    from detector.batch.scoring import BatchJob

    model = str(Path(args.model).resolve()) if args.model and Path(args.model).exists() else args.model  # actors may run elsewhere
    return BatchJob(data_dir=str(Path(args.data_dir).resolve()), database=args.database, model=model,
                    precision=args.precision, align=args.alignment, job_id="")


def cmd_batch_score(args) -> None:
    from detector.batch.jobs import score_listings

    _print_json(score_listings(Path(args.input), Path(args.output), _batch_job(args), ray_address=args.ray_address,
                               use_ray=args.ray, actors=args.actors, batch_size=args.batch_size, restart=args.restart))


def cmd_batch_rescore(args) -> None:
    from detector.batch.jobs import rescore_brand_checks

    _print_json(rescore_brand_checks(args.brand, _batch_job(args), ray_address=args.ray_address, actors=args.actors))


def cmd_export_decisions(args) -> None:
    from detector.export import export_decisions

    log = _check_log(args)
    _print_json(export_decisions(log.store, log.blobs, log, Path(args.out), brand=args.brand))


# --- keys ---

def cmd_keys_create(args) -> None:
    from detector.keys import create_key

    key, record = create_key(_store(args), role=args.role, brand=args.brand)
    print(f"created {record.role} key {record.id}" + (f" for brand {record.brand}" if record.brand else ""), file=sys.stderr)
    print(key)


def cmd_keys_list(args) -> None:
    _print_json({"keys": [
        {"id": k.id, "role": k.role, "brand": k.brand, "created_at": k.created_at, "revoked_at": k.revoked_at}
        for k in _store(args).list_api_keys()
    ]})


def cmd_keys_revoke(args) -> None:
    _store(args).revoke_api_key(args.id)
    print(f"revoked key {args.id}", file=sys.stderr)


def cmd_serve(args) -> None:
    from detector.service.server import serve

    progress.show_progress(False)  # the service logs its progress instead
    serve(args)


# --- parser ---

def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model folder (default: the built-in zero-shot model)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="inference precision on CPU; auto: bf16 where the CPU has native bf16, else fp32")



def add_command(commands, name: str, func: Callable, help: str, *, data_dir: bool = True, creates: bool = False,
                model: bool = True, reembed: bool = True) -> argparse.ArgumentParser:
    """A sub-command with the common flags: ``--data-dir``, ``--model`` and ``--precision``, ``--reembed``, ``-q``.

    ``creates``: the command may set up a data directory that does not exist yet. ``reembed``: it
    offers ``--reembed`` (a command that opens the gallery with a model)."""
    parser = commands.add_parser(name, help=help, description=help)
    if data_dir:
        parser.add_argument("--data-dir", default=None,
                            help=f"runtime state folder (default: ${DATA_DIR_VARIABLE}, else {DEFAULT_DATA_DIR})")
        parser.add_argument("--database", default=None, metavar="URL",
                            help=f"postgresql://... to keep the store in PostgreSQL (default: ${DATABASE_VARIABLE}, else "
                                 f"the data directory's {DB_FILE})")
        parser.set_defaults(creates_data_dir=creates)
    if model:
        add_model_arguments(parser)
    if model and data_dir and reembed:
        parser.add_argument("--reembed", action="store_true",
                            help="re-embed the data directory's references if another model or precision made them "
                                 "(without it such a command refuses; the service always re-embeds)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=func)
    return parser


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="a Ray cluster to run on (default: a local instance on this machine)")
    parser.add_argument("--actors", type=_bounded_int(1, 256), default=1,
                        help="actors, each holding the model and the gallery (default 1)")
    parser.add_argument("--no-alignment", dest="alignment", action="store_false", help="skip aligned verification (faster)")


def add_group(commands, name: str, help: str):
    """A command group (``cfd NAME ACTION``); returns the registry its actions go into."""
    return commands.add_parser(name, help=help).add_subparsers(dest="action", required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cfd", description="Counterfeit product detector")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    brands = add_group(commands, "brands", "manage brands")
    p = add_command(brands, "add", cmd_brands_add, "create a brand", model=False, creates=True)
    p.add_argument("brand")
    p.add_argument("--display-name", default=None)
    add_command(brands, "list", cmd_brands_list, "list brands", model=False)
    p = add_command(brands, "remove", cmd_brands_remove, "delete a brand and its references")
    p.add_argument("brand")

    refs = add_group(commands, "references", "manage reference photos")
    p = add_command(refs, "add", cmd_references_add, "add authentic reference photos (files or folders)")
    p.add_argument("brand")
    p.add_argument("files", nargs="+")
    p.add_argument("--product", default=None)
    p = add_command(refs, "list", cmd_references_list, "list a brand's references", model=False)
    p.add_argument("brand")
    p.add_argument("--limit", type=_bounded_int(1, 1000), default=100, help="references per page (1-1000)")
    p.add_argument("--after", type=_bounded_int(0, MAX_ID), default=None, help="cursor: list ids after this one")
    p = add_command(refs, "remove", cmd_references_remove, "delete references by id")
    p.add_argument("brand")
    p.add_argument("ids", nargs="+", type=reference_id)

    p = add_command(commands, "check", cmd_check, "check a listing's photos; prints CheckResult JSON")
    p.add_argument("files", nargs="+")
    p.add_argument("--brand", default=None, help="the brand the listing claims (default: the predicted brand)")
    p.add_argument("--listing-id", default=None)
    p.add_argument("--heatmap", default=None, metavar="DIR",
                   help="also write each aligned photo's heatmap over the photo as DIR/photo-<index>.png")
    p.add_argument("--no-alignment", dest="alignment", action="store_false",
                   help="skip aligned verification (faster; no heatmaps; refused for a model whose calibration needs it)")

    index = add_group(commands, "index", "the FAISS index")
    add_command(index, "rebuild", cmd_index_rebuild, "rebuild the index from the database")

    p = add_command(commands, "evaluate", cmd_evaluate, "measure detection quality on a dataset folder", data_dir=False)
    p.add_argument("--data", required=True, help="dataset in the <brand>/references|genuine|counterfeit layout")
    p.add_argument("--out", default=None, help="report folder (report.json, report.md, PNG plots)")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=None,
                   help="verify photos by alignment (default: when the model's calibration has an aligned fusion)")

    checks = add_group(commands, "checks", "stored checks and reviewers' decisions")
    p = add_command(checks, "list", cmd_checks_list, "list stored checks, newest first", model=False)
    p.add_argument("--brand", default=None)
    p.add_argument("--verdict", choices=("genuine", "suspicious", "counterfeit", "unverifiable"), default=None)
    p.add_argument("--decision", choices=("undecided", "decided", "genuine", "counterfeit"), default=None)
    p.add_argument("--since", default=None, help="ISO 8601 time (inclusive)")
    p.add_argument("--until", default=None, help="ISO 8601 time (exclusive)")
    p.add_argument("--limit", type=_bounded_int(1, 1000), default=50)
    p.add_argument("--before", type=reference_id, default=None, help="cursor: checks older than this id")
    p = add_command(checks, "show", cmd_checks_show, "one stored check with its decisions", model=False)
    p.add_argument("id", type=reference_id)
    p = add_command(checks, "decide", cmd_checks_decide, "record a reviewer's decision on a check", model=False)
    p.add_argument("id", type=reference_id)
    p.add_argument("decision", choices=("genuine", "counterfeit"))
    p.add_argument("--kind", default=None, help="a counterfeit's kind (the export's counterfeit/<kind> folder)")
    p.add_argument("--note", default=None)
    p = add_command(checks, "prune", cmd_checks_prune, "delete undecided checks older than the retention", model=False)
    p.add_argument("--older-than-days", type=float, required=True)
    p = add_command(checks, "rescore", cmd_checks_rescore,
                    "re-score a brand's stored checks from their stored embeddings; prints which verdicts changed")
    p.add_argument("--brand", required=True)

    batch = add_group(commands, "batch", "bulk work on Ray Data (pip install 'counterfeit-detector[batch]')")
    p = add_command(batch, "score", cmd_batch_score, "score a table of listings (CSV or Parquet: listing_id, brand, photos "
                    "separated by '|'); writes each row's CheckResult to a Parquet file, resuming an interrupted job",
                    reembed=False)
    p.add_argument("--input", required=True, help="listings.csv or listings.parquet")
    p.add_argument("--output", required=True, help="results.parquet")
    p.add_argument("--batch-size", type=_bounded_int(1, 1024), default=8, help="listings per actor call")
    p.add_argument("--restart", action="store_true", help="drop the results of an interrupted job and start over")
    p.add_argument("--no-ray", dest="ray", action="store_false", help="score in this process, without Ray")
    add_batch_arguments(p)
    p = add_command(batch, "rescore", cmd_batch_rescore, "re-score a brand's stored checks from their stored embeddings "
                    "on Ray; prints which verdicts changed", reembed=False)
    p.add_argument("--brand", required=True)
    add_batch_arguments(p)

    export = add_group(commands, "export", "export stored data")
    p = add_command(export, "decisions", cmd_export_decisions, "write decided check photos and the brands' references "
                    "in the dataset layout (for cfd train and cfd evaluate)", model=False)
    p.add_argument("--out", required=True)
    p.add_argument("--brand", default=None, help="only this brand (default: every brand with decisions)")

    keys = add_group(commands, "keys", "API keys")
    p = add_command(keys, "create", cmd_keys_create, "create a key; prints it as the only stdout line", model=False,
                    creates=True)
    p.add_argument("--role", required=True, choices=("admin", "brand", "pipeline"))
    p.add_argument("--brand", default=None)
    add_command(keys, "list", cmd_keys_list, "list keys (never the secrets)", model=False)
    p = add_command(keys, "revoke", cmd_keys_revoke, "revoke a key by id", model=False)
    p.add_argument("id")

    p = add_command(commands, "serve", cmd_serve, "run the HTTP service (it re-embeds references another model made)",
                    creates=True, reembed=False)
    from detector.service.settings import add_serve_arguments

    add_serve_arguments(p)
    for entry in entry_points(group=COMMAND_GROUP):
        entry.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress.show_progress(not args.quiet)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for ours in ("detector", "training"):  # our progress at INFO; libraries stay at WARNING
        logging.getLogger(ours).setLevel(logging.WARNING if args.quiet else logging.INFO)
    keep_freed_memory()
    try:
        if hasattr(args, "data_dir"):
            resolve_data_dir(args)
        args.func(args)
    except DetectorError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `cfd ... | head`: the reader has gone, which is no error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
