"""Aligned verification on a detailed product: it aligns a photo taken at an angle, stays cool on a
genuine photo, finds and boxes a tampered emblem, and refuses another product."""

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from detector.alignment.align import align, ratio_matches
from detector.alignment.dense import colour_distance, correlation
from detector.alignment.features import ReferenceFeatures, photo_view, reference_features
from detector.alignment.heatmap import render_heatmap
from detector.alignment.recipe import DEFAULT_RECIPE, AlignmentRecipe
from detector.alignment.verify import verify
from detector.errors import FeatureFormatError
from tests.alignment_scenes import EMBLEM, blurred, listing_photo, other_product, studio_product
from tests.synthetic import encode

RECIPE = DEFAULT_RECIPE


@pytest.fixture(scope="module")
def reference():
    return reference_features(photo_view(studio_product(), RECIPE), RECIPE)


def _verify(image, reference):
    return verify(photo_view(image, RECIPE), {17: reference}, RECIPE)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_genuine_photo_at_an_angle_aligns_and_its_heatmap_stays_cool(reference, seed):
    photo, _ = listing_photo(studio_product(), seed)
    result = _verify(photo, reference)
    assert result.aligned and result.reference_id == 17
    assert result.inliers >= 30 and result.inlier_ratio > 0.5
    # heat is in fixed units: lighting, angle and background of a genuine photo do not light it up
    assert max(map(max, result.heatmap)) < 0.6
    assert result.signals["aligned_block_peak"] < 2.0


@pytest.mark.parametrize("contrast", [0.8, 1.25])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_genuine_photo_with_another_camera_contrast_does_not_differ(reference, seed, contrast):
    # a phone's contrast darkens dark colours and brightens light ones: one gain per channel cannot undo
    # it (5-11% of the product differed), a gain and an offset can
    photo = np.asarray(listing_photo(studio_product(), seed)[0], np.float32)
    stretched = Image.fromarray(np.clip((photo - 128) * contrast + 128, 0, 255).astype(np.uint8))
    result = _verify(stretched, reference)
    assert result.aligned and result.signals["aligned_diff_area"] < 0.03


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_recoloured_button_a_third_of_a_block_across_stands_out_as_a_spot(reference, seed):
    product = studio_product()
    ImageDraw.Draw(product).ellipse((92, 217, 108, 233), fill=(230, 200, 40))  # on the plain body, left of the text
    genuine = _verify(listing_photo(studio_product(), seed)[0], reference)
    tampered = _verify(listing_photo(product, seed)[0], reference)
    assert tampered.aligned
    assert tampered.signals["aligned_spot_peak"] > 4 * genuine.signals["aligned_spot_peak"]


def test_a_tampered_emblem_stands_out_is_boxed_where_it_is_and_named(reference):
    photo, homography = listing_photo(studio_product(tampered=True), 1)
    genuine = _verify(listing_photo(studio_product(), 1)[0], reference)
    tampered = _verify(photo, reference)
    assert tampered.aligned
    assert tampered.signals["aligned_block_peak"] > 4 * genuine.signals["aligned_block_peak"]
    # the share of the product whose colour differs is about the emblem's share of it
    x0, y0, x1, y1 = EMBLEM
    emblem_share = (x1 - x0) * (y1 - y0) / (380 * 360)  # the product is 380 x 360 pixels
    assert genuine.signals["aligned_diff_area"] < emblem_share / 4
    assert emblem_share / 2 < tampered.signals["aligned_diff_area"] < 2 * emblem_share
    assert max(map(max, tampered.heatmap)) == 1.0
    # the box, in the photo's pixels, overlaps where the emblem was photographed
    emblem = cv2.perspectiveTransform(np.float32([[[x0, y0]], [[x1, y0]], [[x1, y1]], [[x0, y1]]]), homography).reshape(-1, 2)
    bx0, by0, bx1, by1 = tampered.box
    ex0, ey0 = emblem.min(0)
    ex1, ey1 = emblem.max(0)
    assert bx0 < ex1 and ex0 < bx1 and by0 < ey1 and ey0 < by1
    assert tampered.region in ("the product's top left", "the label")
    # the hottest heatmap cell lies inside the emblem's photographed outline
    heat = np.array(tampered.heatmap)
    row, column = np.unravel_index(int(heat.argmax()), heat.shape)
    centre = ((column + 0.5) * photo.width / heat.shape[1], (row + 0.5) * photo.height / heat.shape[0])
    assert cv2.pointPolygonTest(emblem.astype(np.float32), centre, True) > -photo.width / heat.shape[1]


def test_another_product_does_not_align_and_says_why(reference):
    result = _verify(listing_photo(other_product(), 1)[0], reference)
    assert not result.aligned
    assert "geometric inliers" in result.failure
    assert result.heatmap is None and result.box is None
    assert set(result.signals) == {"align_inliers", "align_inlier_ratio"}


def test_ratio_matches_are_opencvs_brute_force_matches(reference):
    photo = photo_view(listing_photo(studio_product(), 2)[0], RECIPE)
    query, train = ratio_matches(photo.float_descriptors, reference.view.float_descriptors, RECIPE.ratio)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(photo.float_descriptors, reference.view.float_descriptors, k=2)
    expected = [(p[0].queryIdx, p[0].trainIdx) for p in pairs if p[0].distance < RECIPE.ratio * p[1].distance]
    assert len(expected) > 50
    assert list(zip(query.tolist(), train.tolist())) == expected


def test_dense_refinement_never_leaves_a_keypoint_fit_worse(reference):
    # On this tampered photo ECC moves the keypoint fit to one that correlates less (0.60 -> 0.53).
    photo = photo_view(blurred(listing_photo(studio_product(tampered=True), 3)[0], 2.0), RECIPE)
    keypoint_fit = align(photo, reference.view, RECIPE)
    assert keypoint_fit.inliers >= RECIPE.min_inliers
    result = verify(photo, {17: reference}, RECIPE)
    assert result.aligned and result.method == "keypoints"
    assert result.correlation >= correlation(photo, reference, keypoint_fit.homography, RECIPE)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_colour_distance_tells_a_colourway_from_the_one_photographed(reference, seed):
    other = reference_features(photo_view(studio_product(colourway=1), RECIPE), RECIPE)
    photo = photo_view(listing_photo(studio_product(), seed)[0], RECIPE)
    fit = align(photo, reference.view, RECIPE).homography  # one geometry: the fit serves both
    assert colour_distance(photo, other, fit, RECIPE) > 1.5 * colour_distance(photo, reference, fit, RECIPE)


def test_no_candidate_features_is_a_failure_not_an_error():
    result = verify(photo_view(studio_product(), RECIPE), {}, RECIPE)
    assert not result.aligned and result.reference_id is None and "no reference" in result.failure


def test_reference_features_round_trip_and_refuse_damaged_bytes(reference):
    data = reference.to_bytes()
    again = ReferenceFeatures.from_bytes(data)
    assert np.array_equal(again.view.points, reference.view.points)
    assert np.array_equal(again.view.descriptors, reference.view.descriptors)
    assert np.array_equal(again.mask, reference.mask) and again.label == reference.label
    # the product region covers the product and leaves the studio background out
    assert again.mask[240, 240] and not again.mask[10, 10]
    with pytest.raises(FeatureFormatError):
        ReferenceFeatures.from_bytes(data[: len(data) // 2])
    with pytest.raises(FeatureFormatError):
        ReferenceFeatures.from_bytes(b"not a feature file")


def test_the_features_fingerprint_follows_what_the_stored_features_depend_on():
    assert AlignmentRecipe(max_side=800).features_fingerprint != RECIPE.features_fingerprint
    assert AlignmentRecipe(min_inliers=30).features_fingerprint == RECIPE.features_fingerprint


def test_heatmap_renders_red_where_hot_and_boxes_the_region():
    photo = encode(studio_product())
    heat = [[0.0, 0.0], [0.0, 1.0]]
    png = render_heatmap(photo, heat, [300, 300, 400, 400])
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (480, 480)
    hot, cold = image[420, 420].astype(int), image[20, 20].astype(int)  # BGR; (20, 20) is the grey backdrop
    assert hot[2] - hot[1] > 60 and abs(int(cold[2]) - int(cold[1])) < 20
    assert tuple(image[300, 350]) != tuple(image[290, 350])  # the box's outline is drawn
