"""Forward selection of alignment signals: a signal that separates held-out brands enters, noise
does not, and one that costs the real-photo set is kept out however well it does on held-out brands."""

import numpy as np

from training.signal_selection import select_aligned_signals


def _rows(n: int, seed: int, *, useful_on: bool = True, harmful: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        rows.append({
            "label": label, "aligned": True, "brand": f"brand-{i % 10}",
            "brand_similarity": 0.8 - 0.05 * label + rng.normal(0, 0.1),
            "brand_margin": 0.1 - 0.02 * label + rng.normal(0, 0.1),
            "other_brand_similarity": 0.7 + rng.normal(0, 0.05),
            # separates the classes wherever useful_on; on the "real" set, harmful turns it around
            "aligned_block_peak": (2.0 * label if useful_on else 0.0) * (-1 if harmful else 1) + rng.normal(0, 1.0),
            "detail_loss": rng.normal(0, 1.0),  # noise everywhere
        })
    return rows


def test_a_separating_signal_enters_and_noise_stays_out():
    selection = select_aligned_signals(_rows(400, 0), _rows(400, 1), _rows(400, 2), base=["brand_similarity", "brand_margin"],
                                       candidates=["aligned_block_peak", "detail_loss"])
    assert selection.chosen == ["aligned_block_peak"]
    assert selection.figures["held_out"] > selection.baseline["held_out"] + 0.1


def test_a_signal_that_costs_the_real_set_is_kept_out():
    selection = select_aligned_signals(_rows(400, 0), _rows(400, 1), _rows(400, 2, harmful=True),
                                       base=["brand_similarity", "brand_margin"], candidates=["aligned_block_peak", "detail_loss"])
    assert selection.chosen == []
    tried = selection.steps[0]["tried"]["aligned_block_peak"]
    assert tried["held_out"] > selection.baseline["held_out"] and tried["real"] < selection.baseline["real"]
    assert selection.figures == selection.baseline
