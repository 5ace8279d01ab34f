"""Training recipes: a YAML file plus ``key=value`` overrides (dotted keys, YAML values), validated
into a typed ``Recipe``. Unknown keys are errors, so a misspelt key never goes unnoticed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detector.errors import InvalidInputError
from detector.signals import SIGNALS
from training.synth.generate import SynthConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthSpec(_Section):
    """Arguments of ``cfd data synth`` for a dataset generated when its folder is missing."""

    brands: int = Field(ge=2)
    seed: int = 0
    references: int = Field(default=8, ge=1)
    genuine: int = Field(default=16, ge=1)
    per_severity: int = Field(default=1, ge=1)
    size: int = Field(default=SynthConfig().size, ge=64)

    def synth_config(self) -> SynthConfig:
        return SynthConfig(**self.model_dump())


class DataSection(_Section):
    root: Path
    manifest: Path | None = None  # a CSV with path,brand,kind[,label] columns (paths relative to root)
    synth: SynthSpec | None = None
    val_brand_fraction: float = Field(gt=0.0, lt=1.0)
    holdout_kinds: list[str] = []
    val_kinds: list[str] = []


class ModelSection(_Section):
    backbone: str
    embedding_dim: int | None = Field(default=None, ge=1)  # None: the pooled features, no projection
    head: bool = False  # a genuine-versus-counterfeit head on the pooled features
    patch_dim: int | None = Field(default=None, ge=1)  # None: no patch head
    train_from_block: int | None = Field(default=None, ge=0)  # None: the whole backbone frozen


class TrainSection(_Section):
    steps: int = Field(ge=1)
    batch_brands: int = Field(ge=1)
    genuine_per_brand: int = Field(ge=1)
    counterfeits_per_brand: int = Field(ge=0)
    references_per_brand: int = Field(ge=1)
    lr: float = Field(gt=0.0)
    backbone_lr: float = Field(ge=0.0)
    weight_decay: float = Field(ge=0.0)
    warmup_steps: int = Field(ge=1)
    grad_clip: float = Field(gt=0.0)
    supcon_weight: float = Field(ge=0.0)
    temperature: float = Field(gt=0.0)
    head_weight: float = Field(ge=0.0)
    patch_weight: float = Field(ge=0.0)
    patch_temperature: float = Field(gt=0.0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    eval_every: int = Field(ge=1)
    patience: int = Field(ge=1)
    stop_after: int | None = Field(default=None, ge=1)  # stop this invocation early; --resume continues


class CalibrationSection(_Section):
    features: list[str] = Field(min_length=1)
    suspicious_fpr: float = Field(gt=0.0, lt=1.0)
    counterfeit_fpr: float = Field(gt=0.0, lt=1.0)

    @field_validator("features")
    @classmethod
    def _known_signals(cls, features: list[str]) -> list[str]:
        unknown = [f for f in features if f not in SIGNALS]
        if unknown:
            raise ValueError(f"unknown signals {unknown}; known signals: {', '.join(SIGNALS)}")
        return features


class BenchmarkEntry(_Section):
    name: str
    path: Path
    synth: SynthSpec | None = None  # generated if the folder is missing


class Recipe(_Section):
    name: str
    version: str
    seed: int
    data: DataSection
    model: ModelSection
    train: TrainSection
    calibration: CalibrationSection
    out: Path  # the run folder: checkpoints, history, curves
    export: Path  # the model folder written at the end
    evaluate: list[BenchmarkEntry] = []  # measured against the zero-shot model in metrics.json and the card

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(path: str | Path, overrides: list[str] = ()) -> Recipe:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidInputError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{path}: expected a mapping at the top level")
    # Overrides apply to the full recipe, defaults included, so any key of the schema can be set.
    recipe = _validate(raw, path)
    return _validate(apply_overrides(recipe.model_dump(mode="json"), overrides), path) if overrides else recipe


def _validate(data: dict[str, Any], source: Path) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()[:8])
        raise InvalidInputError(f"{source}: invalid recipe: {problems}") from None


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"override {item!r} is not key=value")
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise InvalidInputError(f"override {key!r}: {part!r} is not a section of the config")
            node = node[part]
        if parts[-1] not in node:
            raise InvalidInputError(f"override {key!r}: no such key in the config")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise InvalidInputError(f"override {item!r}: value is not valid YAML") from None
    return config
