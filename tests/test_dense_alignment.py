"""Dense alignment: a plain product photographed out of focus, where keypoints cannot agree, is
still placed on its reference (where the test's own homography says), compared, and a recoloured
emblem stands out; another product is refused, and the failure says why."""

import gc

import cv2
import numpy as np
import pytest

from detector.alignment.align import align
from detector.alignment.dense import colour_distance, correlation, dense_align, ecc_refine
from detector.alignment.features import photo_view, reference_features
from detector.alignment.recipe import DEFAULT_RECIPE
from detector.alignment.verify import verify
from tests.alignment_scenes import PRODUCT_CORNERS, SIZE, blurred, listing_photo, other_product, plain_product, restaged, studio_product

RECIPE = DEFAULT_RECIPE
BLUR = 3.0  # pixels: enough that SIFT finds no agreeing keypoints on the plain product
DIAGONAL = float(np.hypot(*np.subtract(PRODUCT_CORNERS[2], PRODUCT_CORNERS[0])))  # of the plain product, pixels


@pytest.fixture(scope="module")
def reference():
    return reference_features(photo_view(plain_product(), RECIPE), RECIPE)


def _photo(seed: int, *, tampered: bool = False):
    photo, homography = listing_photo(plain_product(tampered=tampered), seed)
    return photo_view(blurred(photo, BLUR), RECIPE), homography


def _corner_error(photo_to_reference: np.ndarray, studio_to_photo: np.ndarray) -> float:
    """Largest distance, in pixels, between where a fit and the truth put the product's corners."""
    corners = np.float32(PRODUCT_CORNERS).reshape(-1, 1, 2)
    fitted = cv2.perspectiveTransform(corners, np.linalg.inv(photo_to_reference))
    truth = cv2.perspectiveTransform(corners, studio_to_photo)
    return float(np.linalg.norm(fitted - truth, axis=2).max())


@pytest.mark.parametrize("width", [300, 250, 200])
def test_a_product_running_past_the_photos_edge_is_measured_on_what_the_photo_shows(reference, width):
    # the studio shot's left part, exactly in place: the rest of the product lies past the photo's edge,
    # which must not count as black pixels of the photo (correlation 0.91 / 0.44 / 0.24 when it did)
    view = photo_view(plain_product().crop((0, 0, width, SIZE)), RECIPE)
    assert correlation(view, reference, np.eye(3), RECIPE) > 0.99
    assert colour_distance(view, reference, np.eye(3), RECIPE) < 1.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_blurred_plain_product_aligns_densely_where_keypoints_cannot(reference, seed):
    view, truth = _photo(seed)
    assert align(view, reference.view, RECIPE).inliers < RECIPE.min_inliers
    found = dense_align(view, {4: reference}, RECIPE)
    assert found is not None and found[0] == 4
    # within the outline band the comparison leaves out (flat colours under uneven light: 1-3% of the diagonal)
    assert _corner_error(found[1].homography, truth) < 0.04 * DIAGONAL
    result = verify(view, {4: reference}, RECIPE)
    assert result.aligned and result.method == "dense" and result.correlation >= RECIPE.min_correlation
    assert result.signals["align_correlation"] == result.correlation
    assert max(map(max, result.heatmap)) < 0.6  # a genuine photo stays cool


def test_the_dense_search_picks_the_candidate_whose_product_is_photographed(reference):
    other = reference_features(photo_view(other_product(), RECIPE), RECIPE)
    view, _ = _photo(1)
    assert dense_align(view, {9: other, 4: reference}, RECIPE)[0] == 4
    assert verify(view, {9: other, 4: reference}, RECIPE).reference_id == 4


@pytest.mark.parametrize("seed", [1, 2])
def test_a_photo_is_compared_with_its_own_colourway_not_the_closest_candidate(reference, seed):
    own = reference_features(photo_view(plain_product(colourway=1), RECIPE), RECIPE)
    view = photo_view(blurred(listing_photo(plain_product(colourway=1), seed)[0], BLUR), RECIPE)
    # the closest candidate's colourway correlates well enough to be taken for the photographed one ...
    assert dense_align(view, {4: reference, 5: own}, RECIPE)[0] == 4
    # ... but its colours are further from the photo's, so the photo is compared with its own
    result = verify(view, {4: reference, 5: own}, RECIPE)
    assert result.aligned and result.reference_id == 5 and result.correlation >= RECIPE.min_correlation
    mistaken = verify(view, {4: reference}, RECIPE)
    assert result.signals["aligned_colour_diff"] < mistaken.signals["aligned_colour_diff"] / 2


@pytest.mark.parametrize("seed", [1, 2])
def test_the_own_colourway_is_found_when_its_reference_was_shot_from_another_angle(reference, seed):
    # the own colourway's reference is turned 30 degrees, moved and zoomed against the closest one:
    # the fit is carried over through the two references' own keypoint fit, not assumed to be the same
    own = reference_features(photo_view(restaged(plain_product(colourway=1), 30, (50, 30), 0.85), RECIPE), RECIPE)
    view = photo_view(blurred(listing_photo(plain_product(colourway=1), seed)[0], BLUR), RECIPE)
    result = verify(view, {4: reference, 5: own}, RECIPE)
    assert result.aligned and result.reference_id == 5 and result.correlation >= RECIPE.min_correlation
    assert result.signals["aligned_colour_diff"] < verify(view, {4: reference}, RECIPE).signals["aligned_colour_diff"] / 2


def test_two_references_are_fitted_onto_each_other_once_while_they_stay_loaded(reference):
    # every check of a brand carries fits between the same references: their own fit is kept with them
    own = reference_features(photo_view(restaged(plain_product(colourway=1), 30, (50, 30), 0.85), RECIPE), RECIPE)
    views = [photo_view(blurred(listing_photo(plain_product(colourway=1), seed)[0], BLUR), RECIPE) for seed in (1, 2)]
    first = [verify(view, {4: reference, 5: own}, RECIPE) for view in views]
    held = reference.fits_onto[id(own)]
    assert held[0]() is own and held[2] is not None
    again = [verify(view, {4: reference, 5: own}, RECIPE) for view in views]
    assert reference.fits_onto[id(own)] is held
    assert [r.signals for r in again] == [r.signals for r in first] and all(r.reference_id == 5 for r in again)
    # a reference unloaded since (another object now) leaves no entry behind once the next fit is kept
    del own, held
    gc.collect()
    other = reference_features(photo_view(restaged(plain_product(colourway=1), 30, (50, 30), 0.85), RECIPE), RECIPE)
    verify(views[0], {4: reference, 5: other}, RECIPE)
    assert id(other) in reference.fits_onto and all(ref() is not None for ref, _, _ in reference.fits_onto.values())


def test_a_placement_on_another_colourway_that_correlates_too_little_moves_to_the_own_one():
    # The own colourway's reference shows the product small, so the coarse search places the lavender
    # and charcoal colourways better; the lavender fit correlates 0.69, too little on its own, but it
    # is the right geometry, and carried to the own colourway it correlates 0.99.
    lavender, charcoal = (reference_features(photo_view(plain_product(colourway=c), RECIPE), RECIPE) for c in (3, 2))
    own = reference_features(photo_view(restaged(plain_product(), 0, (0, 0), 0.4), RECIPE), RECIPE)
    view = photo_view(blurred(listing_photo(plain_product(), 1)[0], BLUR), RECIPE)
    candidates = {4: lavender, 2: charcoal, 9: own}
    placed, fit = dense_align(view, candidates, RECIPE)
    assert placed == 4 and fit.correlation < RECIPE.min_correlation
    result = verify(view, candidates, RECIPE)
    assert result.aligned and result.reference_id == 9 and result.correlation >= RECIPE.min_correlation


def test_a_recoloured_emblem_stays_aligned_and_stands_out(reference):
    genuine = verify(_photo(2)[0], {4: reference}, RECIPE)
    tampered_view, truth = _photo(2, tampered=True)
    tampered = verify(tampered_view, {4: reference}, RECIPE)
    # one differing region does not make the product look like another one
    assert tampered.aligned and tampered.method == "dense"
    assert tampered.signals["aligned_block_peak"] > 4 * genuine.signals["aligned_block_peak"]
    assert max(map(max, tampered.heatmap)) > 0.5


def test_another_product_is_not_aligned_densely_and_the_failure_says_why(reference):
    view = photo_view(blurred(listing_photo(other_product(), 1)[0], BLUR), RECIPE)
    result = verify(view, {4: reference}, RECIPE)
    assert not result.aligned and result.method is None and result.correlation is None
    assert "geometric inliers" in result.failure and f"at least {RECIPE.min_correlation}" in result.failure
    assert set(result.signals) == {"align_inliers", "align_inlier_ratio"}


def test_ecc_refinement_pulls_a_misplaced_fit_onto_a_detailed_product():
    reference = reference_features(photo_view(studio_product(), RECIPE), RECIPE)
    photo, truth = listing_photo(studio_product(), 3)
    view = photo_view(blurred(photo, BLUR), RECIPE)
    nudge = np.array([[1.0, 0.02, 9.0], [-0.02, 1.0, -7.0], [0.0, 0.0, 1.0]])  # ~1 degree and 11 px off
    start = np.linalg.inv(truth) @ nudge
    refined = ecc_refine(view, reference, start, RECIPE.refine)
    assert refined is not None
    assert _corner_error(refined, truth) < 3.0 < _corner_error(start, truth) / 4
    assert correlation(view, reference, refined, RECIPE) > correlation(view, reference, start, RECIPE)
