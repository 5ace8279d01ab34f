"""The ``cfd`` console script, run as a user would (a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synthetic import product_photo

CFD = str(Path(sys.executable).parent / "cfd")


def cfd(*args, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([CFD, *args, "--data-dir", str(data_dir), "-q"], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"cfd {' '.join(args)} failed: {result.stderr}")
    return result


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for brand in ("acme", "zenit"):
        (folder / brand).mkdir(parents=True)
        for i in range(3):
            (folder / brand / f"{i}.png").write_bytes(product_photo(brand, i))
    (folder / "listing.png").write_bytes(product_photo("zenit", 50))
    (folder / "fake.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def test_brand_reference_check_workflow(tmp_path, photos):
    data = tmp_path / "var"
    for brand in ("acme", "zenit"):
        cfd("brands", "add", brand, data_dir=data)
        added = json.loads(cfd("references", "add", brand, str(photos / brand), "--product", "p1", data_dir=data).stdout)
        assert len(added["references"]) == 3
    brands = json.loads(cfd("brands", "list", data_dir=data).stdout)["brands"]
    assert [(b["brand"], b["reference_count"]) for b in brands] == [("acme", 3), ("zenit", 3)]

    result = json.loads(cfd("check", "--brand", "acme", "--listing-id", "X", str(photos / "listing.png"), data_dir=data).stdout)
    assert result["listing_id"] == "X" and result["images"][0]["flags"] == ["brand_mismatch", "unaligned"]

    listed = json.loads(cfd("references", "list", "acme", "--limit", "2", data_dir=data).stdout)
    assert len(listed["references"]) == 2 and listed["next"] == listed["references"][-1]["id"]
    cfd("references", "remove", "acme", str(listed["references"][0]["id"]), data_dir=data)
    cfd("index", "rebuild", data_dir=data)
    brands = json.loads(cfd("brands", "list", data_dir=data).stdout)["brands"]
    assert brands[0]["reference_count"] == 2
    cfd("brands", "remove", "zenit", data_dir=data)
    assert [b["brand"] for b in json.loads(cfd("brands", "list", data_dir=data).stdout)["brands"]] == ["acme"]


def test_user_mistakes_exit_nonzero_without_traceback(tmp_path, photos):
    data = tmp_path / "var"
    cfd("brands", "add", "acme", data_dir=data)
    cases = [
        ("brands", "add", "acme"),  # exists
        ("brands", "add", "Not A Slug"),
        ("references", "add", "nobody", str(photos / "acme")),
        ("references", "add", "acme", str(photos / "fake.jpg")),
        ("references", "add", "acme", str(tmp_path / "missing.png")),
        ("references", "remove", "acme", "999"),
        ("check", str(photos / "fake.jpg")),
        ("check", "--brand", "UPPER", str(photos / "listing.png")),
        ("check", "--model", str(tmp_path / "no-model"), str(photos / "listing.png")),
        ("keys", "create", "--role", "brand"),
    ]
    for args in cases:
        result = cfd(*args, data_dir=data, check=False)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, (args, result.stderr)
    result = subprocess.run([CFD, "evaluate", "-q", "--data", str(tmp_path / "no-dataset")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and result.stderr.startswith("error: "), result.stderr
    # the failed upload stored nothing
    assert json.loads(cfd("brands", "list", data_dir=data).stdout)["brands"][0]["reference_count"] == 0


def test_keys_create_prints_only_the_key(tmp_path):
    data = tmp_path / "var"
    cfd("brands", "add", "acme", data_dir=data)
    out = cfd("keys", "create", "--role", "brand", "--brand", "acme", data_dir=data).stdout
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfd_")
    keys = json.loads(cfd("keys", "list", data_dir=data).stdout)["keys"]
    assert keys[0]["role"] == "brand" and keys[0]["brand"] == "acme" and lines[0] not in json.dumps(keys)
    cfd("keys", "revoke", keys[0]["id"], data_dir=data)
    assert json.loads(cfd("keys", "list", data_dir=data).stdout)["keys"][0]["revoked_at"] is not None


def test_cfd_is_the_runtime_cli_and_training_commands_plug_in():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "cfd"]
    assert script.value == "detector.cli:main"
    (plugin,) = [e for e in entry_points(group="counterfeit_detector.commands") if e.name == "training"]
    assert plugin.value == "training.cli:register"
    for command in (["train", "--help"], ["data", "synth", "--help"], ["calibrate", "--help"]):
        result = subprocess.run([CFD, *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "usage: cfd" in result.stdout, result.stderr


def test_read_commands_never_create_a_data_directory(tmp_path):
    typo = tmp_path / "vra"
    for args in (("brands", "list"), ("keys", "list"), ("references", "list", "acme"), ("index", "rebuild")):
        result = cfd(*args, data_dir=typo, check=False)
        assert result.returncode == 1 and "no data directory at" in result.stderr, (args, result.stderr)
    assert not typo.exists()
    created = cfd("keys", "create", "--role", "admin", data_dir=typo)
    assert f"creating a new data directory at {typo}" in created.stderr


def test_the_data_directory_comes_from_the_environment(tmp_path):
    data = tmp_path / "from-env"
    env = {**os.environ, "CFD_DATA_DIR": str(data)}
    run = lambda *args: subprocess.run([CFD, *args, "-q"], capture_output=True, text=True, timeout=120, env=env)  # noqa: E731
    assert run("brands", "add", "acme").returncode == 0
    assert (data / "db.sqlite3").is_file()
    assert json.loads(run("brands", "list").stdout)["brands"][0]["brand"] == "acme"


def test_output_into_a_closed_pipe_is_quiet(tmp_path):
    data = tmp_path / "var"
    for i in range(40):
        cfd("brands", "add", f"brand-{i}", data_dir=data)
    shell = f"{CFD} brands list -q --data-dir {data} | head -1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "{" and "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert result.returncode == 0


def test_out_of_range_numbers_are_usage_errors_of_their_command(tmp_path):
    data = tmp_path / "var"
    cfd("brands", "add", "acme", data_dir=data)
    for args in (("references", "list", "acme", "--limit", "0"), ("references", "list", "acme", "--after", str(2**63)),
                 ("references", "remove", "acme", str(2**63))):
        result = cfd(*args, data_dir=data, check=False)
        assert result.returncode == 2 and f"usage: cfd references {args[1]}" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_references_add_checks_its_files_before_loading_the_model(tmp_path, photos):
    data = tmp_path / "var"
    cfd("brands", "add", "acme", data_dir=data)
    # a model folder that does not exist: the bad file must be reported first
    result = cfd("references", "add", "acme", str(photos / "fake.jpg"), "--model", str(tmp_path / "no-model"),
                 data_dir=data, check=False)
    assert result.returncode == 1 and "fake.jpg" in result.stderr and "no-model" not in result.stderr, result.stderr


def test_the_cli_pages_references_as_the_api_does(tmp_path, photos):
    data = tmp_path / "var"
    cfd("brands", "add", "acme", data_dir=data)
    cfd("references", "add", "acme", str(photos / "acme"), data_dir=data)  # three photos
    exact = json.loads(cfd("references", "list", "acme", "--limit", "3", data_dir=data).stdout)
    assert len(exact["references"]) == 3 and exact["next"] is None
    first = json.loads(cfd("references", "list", "acme", "--limit", "2", data_dir=data).stdout)
    rest = json.loads(cfd("references", "list", "acme", "--limit", "2", "--after", str(first["next"]), data_dir=data).stdout)
    assert first["next"] == first["references"][-1]["id"] and len(rest["references"]) == 1 and rest["next"] is None


def test_a_command_with_another_model_never_re_embeds_a_data_directory_unasked(tmp_path, photos, patch_model):
    data = tmp_path / "var"
    cfd("brands", "add", "acme", data_dir=data)
    cfd("references", "add", "acme", str(photos / "acme"), data_dir=data)
    other = ("check", "--brand", "acme", str(photos / "listing.png"), "--model", str(patch_model.path))
    refused = cfd(*other, data_dir=data, check=False)
    assert refused.returncode == 1 and "--reembed" in refused.stderr, refused.stderr
    assert json.loads(cfd("check", "--brand", "acme", str(photos / "listing.png"), data_dir=data).stdout)["verdict"] != "unverifiable"
    done = cfd(*other, "--reembed", data_dir=data)
    assert json.loads(done.stdout)["model"]["name"] == "patchy"


def test_review_workflow_from_the_command_line(tmp_path, photos):
    data = tmp_path / "var"
    for brand in ("acme", "zenit"):
        cfd("brands", "add", brand, data_dir=data)
        cfd("references", "add", brand, str(photos / brand), data_dir=data)
    listing = json.loads(cfd("check", "--brand", "acme", str(photos / "listing.png"), data_dir=data).stdout)
    queue = json.loads(cfd("checks", "list", "--decision", "undecided", data_dir=data).stdout)
    assert [c["id"] for c in queue["checks"]] == [listing["check_id"]] and queue["checks"][0]["key_id"] == "local"
    cfd("checks", "decide", str(listing["check_id"]), "counterfeit", "--kind", "lookalike", data_dir=data)
    shown = json.loads(cfd("checks", "show", str(listing["check_id"]), data_dir=data).stdout)
    assert shown["decision"] == "counterfeit" and shown["decisions"][0]["kind"] == "lookalike"

    # too little evidence: the brand is named as skipped, not calibrated
    calibrated = json.loads(cfd("calibrate", "--per-brand", data_dir=data).stdout)
    assert calibrated["calibrated"] == [] and set(calibrated["skipped"]) == {"acme", "zenit"}
    refused = cfd("calibrate", "--per-brand", "--brand", "acme", data_dir=data, check=False)
    assert refused.returncode == 1 and "too little genuine evidence" in refused.stderr
    more = tmp_path / "more"
    more.mkdir()
    for i in range(3, 12):
        (more / f"{i}.png").write_bytes(product_photo("acme", i))
    cfd("references", "add", "acme", str(more), data_dir=data)
    calibrated = json.loads(cfd("calibrate", "--per-brand", "--brand", "acme", data_dir=data).stdout)
    assert calibrated["calibrated"][0]["calibration"]["source"] == "leave-one-out"
    assert calibrated["calibrated"][0]["decided_counterfeit"]["n"] == 1

    (more / "listing.png").write_bytes((photos / "listing.png").read_bytes())
    cfd("references", "add", "acme", str(more / "listing.png"), data_dir=data)  # the listing's photo is now a reference
    rescored = json.loads(cfd("checks", "rescore", "--brand", "acme", data_dir=data).stdout)
    assert rescored["rescored"] == 1 and rescored["skipped_other_model"] == 0
    shown = json.loads(cfd("checks", "show", str(listing["check_id"]), data_dir=data).stdout)
    assert shown["rescored_at"] and shown["result"]["images"][0]["brand_similarity"] == 1.0
    assert shown["counterfeit_score"] < listing["counterfeit_score"]

    exported = json.loads(cfd("export", "decisions", "--out", str(tmp_path / "export"), data_dir=data).stdout)
    assert exported["counterfeit_photos"] == 1 and exported["references"] == 13
    assert len(list((tmp_path / "export" / "acme" / "counterfeit" / "lookalike").iterdir())) == 1
    pruned = cfd("checks", "prune", "--older-than-days", "1", data_dir=data)
    assert "deleted 0 undecided" in pruned.stderr
