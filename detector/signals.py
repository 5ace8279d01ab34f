"""The signal table: every per-photo signal's name, meaning, direction and what a model needs to
produce it. Scoring computes them, calibration constrains their weights by ``sign``, model loading
rejects a calibration that names a signal the model cannot produce, and reports orient them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signal:
    name: str
    meaning: str
    # +1: a higher value means more likely counterfeit; -1: more likely genuine. Calibration keeps the
    # fused weight on this side of zero, so the score stays monotonic in what the signal means.
    sign: int
    # None: every model produces it; otherwise the model part it needs ("head", "patch_head")
    requires: str | None = None

    def oriented(self, value: float) -> float:
        """The value turned so that higher means more likely counterfeit."""
        return self.sign * value


SIGNALS: dict[str, Signal] = {s.name: s for s in (
    Signal("brand_similarity", "cosine similarity to the closest reference of the claimed brand", -1),
    Signal("brand_topk_similarity", "mean similarity to the claimed brand's top_k closest references", -1),
    Signal("other_brand_similarity", "similarity to the closest reference of any other brand", +1),
    Signal("brand_margin", "brand_similarity minus other_brand_similarity", -1),
    Signal("head_logit", "logit of the model's genuine-versus-counterfeit head", +1, requires="head"),
    Signal("patch_anomaly", "attention-weighted share of the closest references' parts with no match in the photo", +1,
           requires="patch_head"),
)}
# Signals that compare with another brand: a single-brand gallery needs the calibration's stand-in.
OTHER_BRAND_SIGNALS = frozenset({"other_brand_similarity", "brand_margin"})


def signal(name: str) -> Signal:
    try:
        return SIGNALS[name]
    except KeyError:
        raise KeyError(f"unknown signal {name!r}; known signals: {', '.join(SIGNALS)}") from None


def produced_signals(*, head: bool, patch_head: bool) -> frozenset[str]:
    """The signals a model with (or without) a head and a patch head produces."""
    parts = {None, *(["head"] if head else []), *(["patch_head"] if patch_head else [])}
    return frozenset(s.name for s in SIGNALS.values() if s.requires in parts)
