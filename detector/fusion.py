"""A fusion of named signals into a counterfeit probability: a logistic sum of each signal times its
weight, where a signal may first pass through its shape (a monotone step function fitted with the
fusion, so that the logit can rise fast over a signal's usual range and level off beyond it)."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from detector.signals import signal


@dataclass(frozen=True)
class Shape:
    """A step function of one signal: ``values[i]`` for ``thresholds[i - 1] <= x < thresholds[i]``."""

    thresholds: tuple[float, ...]
    values: tuple[float, ...]

    def __call__(self, x: float) -> float:
        return self.values[bisect.bisect_right(self.thresholds, x)]

    def problem(self, name: str) -> str | None:
        """What makes this shape unusable for signal ``name`` (None: nothing). It must turn the signal
        the way the signal table says it points, as a weight's sign must."""
        if len(self.values) != len(self.thresholds) + 1:
            return f"shape of {name}: {len(self.thresholds)} thresholds need {len(self.thresholds) + 1} values"
        if not all(math.isfinite(v) for v in (*self.thresholds, *self.values)):
            return f"shape of {name}: thresholds and values must be finite numbers"
        if any(b <= a for a, b in zip(self.thresholds, self.thresholds[1:])):
            return f"shape of {name}: thresholds must increase"
        direction = signal(name).sign
        if any(direction * (b - a) < 0 for a, b in zip(self.values, self.values[1:])):
            return (f"shape of {name}: values must {'rise' if direction > 0 else 'fall'} with the signal "
                    f"(a higher {name} means {'more' if direction > 0 else 'less'} likely counterfeit)")
        return None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Shape":
        return cls(tuple(float(t) for t in data["thresholds"]), tuple(float(v) for v in data["values"]))

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds), "values": list(self.values)}


@dataclass(frozen=True)
class Fusion:
    """A logistic fusion of named signals; ``shapes``: the signals that pass through a shape first."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    shapes: dict[str, Shape] = field(default_factory=dict)

    def logit(self, signals: dict[str, float]) -> float:
        return self.bias + sum(w * self._value(name, signals[name]) for name, w in zip(self.features, self.weights))

    def score(self, signals: dict[str, float]) -> float:
        return sigmoid(self.logit(signals))

    def _value(self, name: str, value: float) -> float:
        shape = self.shapes.get(name)
        return value if shape is None else shape(value)

    def problem(self) -> str | None:
        """What makes this fusion unusable (None: nothing)."""
        if len(self.features) != len(self.weights):
            return f"{len(self.features)} features but {len(self.weights)} weights"
        unknown = sorted(set(self.shapes) - set(self.features))
        if unknown:
            return f"shapes of signals the fusion does not read: {unknown}"
        negative = sorted(name for name, w in zip(self.features, self.weights) if name in self.shapes and w < 0)
        if negative:
            return f"a shaped signal's weight must not be negative (it would turn its shape around): {negative}"
        return next((p for name, shape in self.shapes.items() if (p := shape.problem(name))), None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Fusion":
        return cls(tuple(str(f) for f in data["features"]), tuple(float(w) for w in data["weights"]), float(data["bias"]),
                   {str(name): Shape.from_dict(shape) for name, shape in data.get("shapes", {}).items()})

    def to_dict(self) -> dict[str, Any]:
        data = {"features": list(self.features), "weights": list(self.weights), "bias": self.bias}
        if self.shapes:
            data["shapes"] = {name: shape.to_dict() for name, shape in self.shapes.items()}
        return data


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
