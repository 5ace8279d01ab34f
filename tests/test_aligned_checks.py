"""Aligned verification through the gallery and the one check path: features stored at upload and
kept in step with the references, alignment in every check's result, the aligned fusion only for
photos that aligned, and reasons that say what was found or why nothing could be."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from detector.alignment.recipe import AlignmentRecipe
from detector.alignment.store import FEATURES_DIR
from detector.errors import ModelFolderError
from detector.gallery import Gallery, UploadFile
from detector.fusion import Fusion
from detector.model_folder import Calibration
from detector.pipeline import Detector
from tests.alignment_scenes import listing_photo, other_product, studio_product
from tests.synthetic import encode, product_photo
from tests.test_cli import cfd

ALIGNED = Fusion(("brand_similarity", "aligned_block_peak", "align_inliers"), (-2.0, 1.5, -0.5), 2.0)


def _photo(name, image):
    return UploadFile(name, encode(image, "JPEG", quality=92))


@pytest.fixture
def scenes(gallery):
    """A brand with detailed references (the studio product, twice) and another with plain ones."""
    gallery.create_brand("acme")
    gallery.add_references("acme", [_photo("ref0.jpg", studio_product()), _photo("ref1.jpg", studio_product(seed=1))])
    gallery.create_brand("zenit")
    gallery.add_references("zenit", [UploadFile(f"z{i}.png", product_photo("zenit", i)) for i in range(2)])
    return gallery


def _feature_files(gallery) -> set[str]:
    return {p.name for p in (gallery.data_dir / FEATURES_DIR).rglob("*.npz")}


def test_features_are_stored_at_upload_and_removed_with_their_reference(scenes):
    references = scenes.store.list_references("acme")
    assert _feature_files(scenes) == {f"{r.sha256}.npz" for r in scenes.store.list_references("acme")
                                      + scenes.store.list_references("zenit")}
    scenes.delete_reference("acme", references[0].id)
    assert f"{references[0].sha256}.npz" not in _feature_files(scenes)
    assert f"{references[1].sha256}.npz" in _feature_files(scenes)


def test_a_check_carries_each_photos_alignment_heatmap_and_named_region(zero_shot, scenes):
    genuine, _ = listing_photo(studio_product(), 1)
    tampered, _ = listing_photo(studio_product(tampered=True), 1)
    result = Detector(zero_shot, scenes).check([_photo("g.jpg", genuine), _photo("t.jpg", tampered)], brand="acme")
    first, second = (image.alignment for image in result.images)
    assert first.aligned and second.aligned
    assert first.reference_id in {r.id for r in scenes.store.list_references("acme")}
    assert len(first.heatmap) == 12 and len(first.heatmap[0]) == 12
    assert max(map(max, second.heatmap)) > max(map(max, first.heatmap))
    x0, y0, x1, y1 = second.suspicious_box
    assert 0 <= x0 < x1 <= tampered.width and 0 <= y0 < y1 <= tampered.height
    assert second.region and second.difference in ("colour", "structure")


def test_an_unaligned_photo_is_flagged_and_scored_by_the_embedding_fusion_alone(zero_shot, scenes):
    model = replace(zero_shot, calibration=replace(zero_shot.calibration, aligned=ALIGNED))
    genuine, _ = listing_photo(studio_product(), 2)
    other, _ = listing_photo(other_product(), 2)
    detector = Detector(model, scenes)
    result = detector.check([_photo("g.jpg", genuine), _photo("o.jpg", other)], brand="acme")
    aligned, unaligned = result.images
    assert "unaligned" not in aligned.flags and "unaligned" in unaligned.flags
    assert not unaligned.alignment.aligned and "geometric inliers" in unaligned.alignment.failure
    assert any(r.startswith("photo 1 could not be aligned") and "embedding signals alone" in r for r in result.reasons)
    # each photo's score is the fusion its alignment calls for, recomputed here from its signals
    evidence = _evidence(detector, [genuine, other])
    assert evidence[0].verification.aligned and not evidence[1].verification.aligned
    assert aligned.counterfeit_score == pytest.approx(ALIGNED.score(evidence[0].signals), abs=1e-4)
    assert unaligned.counterfeit_score == pytest.approx(model.calibration.embedding_fusion.score(evidence[1].signals), abs=1e-4)


def _evidence(detector, images):
    from detector.scoring import Scorer

    decoded = detector.decode([_photo(f"{i}.jpg", image) for i, image in enumerate(images)])
    gallery = detector.gallery
    scorer = Scorer(detector.model.calibration, gallery.index, reference_features=gallery.reference_features,
                    alignment=gallery.alignment)
    return scorer.evidence(detector.embedder.embed_tensor(decoded.pixels), "acme", decoded.views)


def test_a_tampered_photo_is_explained_by_its_region(zero_shot, scenes):
    calibration = replace(zero_shot.calibration, aligned=ALIGNED, high_block_peak=3.0)
    tampered, _ = listing_photo(studio_product(tampered=True), 3)
    result = Detector(replace(zero_shot, calibration=calibration), scenes).check([_photo("t.jpg", tampered)], brand="acme")
    assert "local_difference" in result.images[0].flags
    region = result.images[0].alignment.region
    assert any(r.startswith(f"photo 0: {region} differs in ") and "from reference" in r for r in result.reasons)


def test_missing_or_damaged_features_are_recomputed_from_the_original(zero_shot, scenes):
    files = [scenes.features.path(r.sha256) for r in scenes.store.list_references("acme")]
    files[0].unlink()
    files[1].write_bytes(b"damaged")
    photo, _ = listing_photo(studio_product(), 1)
    fresh = Gallery(scenes.data_dir, embedder=scenes.embedder, model_fingerprint=zero_shot.fingerprint).open()
    try:
        result = Detector(zero_shot, fresh).check([_photo("g.jpg", photo)], brand="acme")
        assert result.images[0].alignment.aligned
        assert fresh.reference_features([r.id for r in fresh.store.list_references("acme")]).keys() == \
            {r.id for r in fresh.store.list_references("acme")}
    finally:
        fresh.close()
    assert files[0].exists() and files[1].read_bytes() != b"damaged"


def test_another_recipe_recomputes_features_and_the_old_ones_are_removed_at_start(zero_shot, scenes):
    old = scenes.features.root
    recipe = AlignmentRecipe(max_side=480)
    reopened = Gallery(scenes.data_dir, embedder=scenes.embedder, model_fingerprint=zero_shot.fingerprint,
                       alignment=recipe).open()
    try:
        assert not old.exists()
        ids = [r.id for r in reopened.store.list_references("acme")]
        features = reopened.reference_features(ids)
        assert set(features) == set(ids) and max(features[ids[0]].view.shape) <= 480
        assert len(list(reopened.features.root.rglob("*.npz"))) == 2
    finally:
        reopened.close()


def test_the_embedding_fusion_may_not_read_alignment_signals(zero_shot):
    data = zero_shot.calibration.to_dict()
    data["features"] = [*data["features"], "aligned_block_peak"]
    data["weights"] = [*data["weights"], 1.0]
    with pytest.raises(ModelFolderError, match="aligned fusion"):
        Calibration.from_dict(data, source="test")
    data = zero_shot.calibration.to_dict()
    data["aligned"] = {"features": ["aligned_block_peek"], "weights": [1.0], "bias": 0.0}
    with pytest.raises(ModelFolderError, match="unknown signals"):
        Calibration.from_dict(data, source="test")
    data["aligned"] = ALIGNED.to_dict()
    assert Calibration.from_dict(data, source="test").aligned == ALIGNED


def test_cfd_check_writes_heatmaps_of_aligned_photos(tmp_path):
    data = tmp_path / "var"
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "ref.jpg").write_bytes(encode(studio_product(), "JPEG", quality=92))
    (photos / "listing.jpg").write_bytes(encode(listing_photo(studio_product(tampered=True), 1)[0], "JPEG", quality=92))
    (photos / "other.jpg").write_bytes(encode(listing_photo(other_product(), 1)[0], "JPEG", quality=92))
    cfd("brands", "add", "acme", data_dir=data)
    cfd("references", "add", "acme", str(photos / "ref.jpg"), data_dir=data)
    out = tmp_path / "heat"
    result = cfd("check", "--brand", "acme", "--heatmap", str(out), str(photos / "listing.jpg"), str(photos / "other.jpg"),
                 data_dir=data)
    images = json.loads(result.stdout)["images"]
    assert images[0]["alignment"]["aligned"] and not images[1]["alignment"]["aligned"]
    assert sorted(p.name for p in out.iterdir()) == ["photo-0.png"]
    assert (out / "photo-0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1 photo(s) did not align" in result.stderr


@pytest.mark.parametrize("size", [(1, 1), (1, 700), (700, 2), (64, 64)])
def test_degenerate_pictures_never_break_alignment(zero_shot, gallery, size):
    """Tiny, line-shaped and featureless references and photos: the check answers, the photo is just not aligned."""
    from PIL import Image

    flat = Image.new("RGB", size, (120, 130, 140))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    gallery.create_brand("odd")
    gallery.add_references("odd", [UploadFile("flat.png", encode(flat)), UploadFile("noise.png", encode(noise))])
    result = Detector(zero_shot, gallery).check([UploadFile("a.png", encode(noise)), UploadFile("b.png", encode(flat))],
                                                brand="odd")
    for image in result.images:
        assert image.alignment is not None and image.counterfeit_score is not None


def test_alignment_can_be_turned_off_unless_the_calibration_needs_it(zero_shot, scenes):
    from detector.errors import InvalidInputError

    photo, _ = listing_photo(studio_product(tampered=True), 5)
    files = [_photo("t.jpg", photo)]
    aligned = Detector(zero_shot, scenes).check(files, brand="acme")
    plain = Detector(zero_shot, scenes, align=False).check(files, brand="acme")
    assert aligned.images[0].alignment.aligned and plain.images[0].alignment is None
    # the shipped calibration has no aligned fusion: alignment explains, it does not change the score
    assert plain.counterfeit_score == aligned.counterfeit_score and plain.verdict == aligned.verdict
    with pytest.raises(InvalidInputError, match="cannot be turned off"):
        Detector(replace(zero_shot, calibration=replace(zero_shot.calibration, aligned=ALIGNED)), scenes, align=False)


def test_cfd_check_without_alignment(tmp_path):
    data = tmp_path / "var"
    reference, listing = tmp_path / "ref.jpg", tmp_path / "listing.jpg"
    reference.write_bytes(encode(studio_product(), "JPEG", quality=92))
    listing.write_bytes(encode(listing_photo(studio_product(), 1)[0], "JPEG", quality=92))
    cfd("brands", "add", "acme", data_dir=data)
    cfd("references", "add", "acme", str(reference), data_dir=data)
    result = json.loads(cfd("check", "--brand", "acme", "--no-alignment", str(listing), data_dir=data).stdout)
    assert result["images"][0]["alignment"] is None
    refused = cfd("check", "--brand", "acme", "--no-alignment", "--heatmap", str(tmp_path / "h"), str(listing),
                  data_dir=data, check=False)
    assert refused.returncode == 1 and "--heatmap needs alignment" in refused.stderr
    (tmp_path / "a-file").write_text("not a folder")
    refused = cfd("check", "--brand", "acme", "--heatmap", str(tmp_path / "a-file"), str(listing), data_dir=data, check=False)
    assert refused.returncode == 1 and "cannot be used as a folder" in refused.stderr and "Traceback" not in refused.stderr
