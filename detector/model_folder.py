"""Model folders: ``config.json``, ``model.safetensors``, ``calibration.json``, ``metrics.json``,
``MODEL_CARD.md``. No pickles. Every missing or mismatched file is an error that names it.

A config whose ``weights`` is ``"pretrained-backbone"`` needs no ``model.safetensors``: the
zero-shot model is the registry's pretrained backbone as it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from detector.backbones import build_backbone, get_backbone_spec
from detector.embedder import Embedder, EmbeddingNet
from detector.precision import resolve_precision
from detector.errors import DetectorError, ModelFolderError
from detector.fsutil import atomic_write_bytes
from detector.fusion import Fusion, Shape
from detector.results import verdict_at
from detector.signals import ALIGNMENT_SIGNALS, OTHER_BRAND_SIGNALS, SIGNALS, produced_signals
from detector.transforms import EvalTransform, InputConfig

FORMAT_VERSION = 1
PRETRAINED_BACKBONE = "pretrained-backbone"
WEIGHTS_FILE = "model.safetensors"
REQUIRED_FILES = ("config.json", "calibration.json", "metrics.json", "MODEL_CARD.md")
DEFAULT_MODEL_NAME = "zero-shot-efficientnet-lite0"


@dataclass(frozen=True)
class ModelConfig:
    name: str
    version: str
    backbone: str
    input: InputConfig
    feature_dim: int
    embedding_dim: int | None  # None: no projection, embeddings are the pooled features
    head: bool
    weights: str  # PRETRAINED_BACKBONE or WEIGHTS_FILE
    format_version: int = FORMAT_VERSION
    patch_dim: int | None = None  # None: no patch descriptors (see detector.patches)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str) -> "ModelConfig":
        try:
            config = cls(
                name=str(data["name"]),
                version=str(data["version"]),
                backbone=str(data["backbone"]),
                input=InputConfig(
                    input_size=int(data["input_size"]),
                    crop_pct=float(data["crop_pct"]),
                    interpolation=str(data["interpolation"]),
                    mean=tuple(float(v) for v in data["mean"]),
                    std=tuple(float(v) for v in data["std"]),
                ),
                feature_dim=int(data["feature_dim"]),
                embedding_dim=None if data.get("embedding_dim") is None else int(data["embedding_dim"]),
                head=bool(data["head"]),
                weights=str(data["weights"]),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
                patch_dim=None if data.get("patch_dim") is None else int(data["patch_dim"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFolderError(f"{source}: invalid or missing field ({exc!r})") from None
        if config.format_version != FORMAT_VERSION:
            raise ModelFolderError(f"{source}: format_version {config.format_version} is not supported")
        if config.weights not in (PRETRAINED_BACKBONE, WEIGHTS_FILE):
            raise ModelFolderError(f"{source}: weights must be {PRETRAINED_BACKBONE!r} or {WEIGHTS_FILE!r}")
        if config.patch_dim is not None and config.patch_dim < 1:
            raise ModelFolderError(f"{source}: patch_dim must be positive")
        return config

    def to_dict(self) -> dict[str, Any]:
        """config.json keeps the input fields at the top level."""
        data = asdict(self)
        data.update(data.pop("input"))
        return data

    @property
    def output_dim(self) -> int:
        return self.embedding_dim or self.feature_dim

    @property
    def signals(self) -> frozenset[str]:
        return produced_signals(head=self.head, patch_head=self.patch_dim is not None)

    def transform(self) -> EvalTransform:
        return EvalTransform(self.input)


# calibration.json keeps these in "extra"; they are typed here because scoring reads them.
_TYPED_EXTRA = ("default_other_similarity", "low_similarity", "high_patch_anomaly", "high_block_peak")


@dataclass(frozen=True)
class Calibration:
    """Logistic fusion of per-photo signals into a counterfeit probability, plus thresholds.

    ``features``/``weights``/``bias`` (and ``shapes``, see ``detector.fusion``) fuse the embedding
    signals; ``aligned``, when present, fuses the signals of a photo that aligned with a reference
    (see ``detector.alignment``), and the embedding fusion then scores photos that did not align (its
    bias is theirs: both are fitted together)."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    suspicious_threshold: float
    counterfeit_threshold: float
    top_k: int = 3
    aggregation: str = "max"
    notes: str = ""
    # stands in for the best other-brand similarity when the gallery holds a single brand
    default_other_similarity: float | None = None
    # flags with a reason of their own: below / above these the photo is flagged (None: no such flag)
    low_similarity: float | None = None
    high_patch_anomaly: float | None = None
    high_block_peak: float | None = None
    aligned: Fusion | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: targets, sample counts
    shapes: dict[str, Shape] = field(default_factory=dict)  # the embedding fusion's shaped signals

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str) -> "Calibration":
        try:
            thresholds = data["thresholds"]
            extra = dict(data.get("extra", {}))
            typed = {key: None if extra.get(key) is None else float(extra[key]) for key in _TYPED_EXTRA}
            extra = {k: v for k, v in extra.items() if k not in _TYPED_EXTRA}
            calibration = cls(
                features=tuple(str(f) for f in data["features"]),
                weights=tuple(float(w) for w in data["weights"]),
                bias=float(data["bias"]),
                suspicious_threshold=float(thresholds["suspicious"]),
                counterfeit_threshold=float(thresholds["counterfeit"]),
                top_k=int(data.get("top_k", 3)),
                aggregation=str(data.get("aggregation", "max")),
                notes=str(data.get("notes", "")),
                aligned=None if data.get("aligned") is None else Fusion.from_dict(data["aligned"]),
                extra=extra,
                shapes={str(name): Shape.from_dict(shape) for name, shape in data.get("shapes", {}).items()},
                **typed,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFolderError(f"{source}: invalid or missing field ({exc!r})") from None
        if not 0.0 <= calibration.suspicious_threshold <= calibration.counterfeit_threshold <= 1.0:
            raise ModelFolderError(f"{source}: thresholds must satisfy 0 <= suspicious <= counterfeit <= 1")
        if calibration.aggregation not in ("max", "mean"):
            raise ModelFolderError(f"{source}: aggregation must be 'max' or 'mean'")
        if calibration.top_k < 1:
            raise ModelFolderError(f"{source}: top_k must be at least 1")
        aligned = calibration.aligned
        used = set(calibration.features) | set(aligned.features if aligned else ())
        unknown = sorted(used - set(SIGNALS))
        if unknown:
            raise ModelFolderError(f"{source}: unknown signals {unknown}; known signals: {', '.join(SIGNALS)}")
        for label, fusion in (("", calibration.embedding_fusion), ("aligned: ", aligned)):
            if fusion is not None and (problem := fusion.problem()):
                raise ModelFolderError(f"{source}: {label}{problem}")
        if ALIGNMENT_SIGNALS & set(calibration.features):
            raise ModelFolderError(f"{source}: alignment signals {sorted(ALIGNMENT_SIGNALS & set(calibration.features))} "
                                   "belong in the aligned fusion: the embedding fusion scores photos that did not align")
        if OTHER_BRAND_SIGNALS & used and calibration.default_other_similarity is None:
            raise ModelFolderError(f"{source}: features {sorted(OTHER_BRAND_SIGNALS & used)} need "
                                   "extra.default_other_similarity for galleries that hold a single brand")
        return calibration

    @property
    def embedding_fusion(self) -> Fusion:
        return Fusion(self.features, self.weights, self.bias, self.shapes)

    @property
    def signals(self) -> frozenset[str]:
        """Every signal either fusion reads."""
        return frozenset(self.features) | frozenset(self.aligned.features if self.aligned else ())

    def fuse(self, signals: dict[str, float], *, aligned: bool = False) -> float:
        """The counterfeit probability of one photo's signals: by the aligned fusion when the photo
        aligned and the calibration has one, else by the embedding fusion."""
        return (self.aligned if aligned and self.aligned is not None else self.embedding_fusion).score(signals)

    def verdict(self, score: float) -> str:
        return verdict_at(score, suspicious=self.suspicious_threshold, counterfeit=self.counterfeit_threshold)

    def aggregate(self, scores: list[float]) -> float | None:
        """A listing's score from its photos' scores (None when no photo could be scored)."""
        if not scores:
            return None
        return max(scores) if self.aggregation == "max" else float(np.mean(scores))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["thresholds"] = {
            "suspicious": data.pop("suspicious_threshold"),
            "counterfeit": data.pop("counterfeit_threshold"),
        }
        typed = {key: data.pop(key) for key in _TYPED_EXTRA}
        del data["aligned"], data["shapes"]  # asdict's forms: written as the fusions write them, when present
        if self.aligned is not None:
            data["aligned"] = self.aligned.to_dict()
        if self.shapes:
            data["shapes"] = {name: shape.to_dict() for name, shape in self.shapes.items()}
        data["extra"] = {**data["extra"], **{key: value for key, value in typed.items() if value is not None}}
        return data


@dataclass
class LoadedModel:
    path: Path
    config: ModelConfig
    calibration: Calibration
    metrics: dict[str, Any]
    net: EmbeddingNet
    fingerprint: str
    precision: str = "fp32"  # resolved: "fp32" or "bf16"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        return self.config.version

    def embedder(self, *, batch_size: int = 16) -> Embedder:
        return Embedder(self.net, self.config.transform(), batch_size=batch_size, precision=self.precision)


def default_model_path() -> Path:
    """The zero-shot model shipped inside the package."""
    return Path(str(resources.files("detector") / "builtin_models" / DEFAULT_MODEL_NAME))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFolderError(f"model folder {path.parent}: missing {path.name}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: expected a JSON object")
    return data


def load_model(path: str | Path | None = None, *, precision: str = "auto") -> LoadedModel:
    """Load a model folder (default: the built-in zero-shot model) to run at ``precision``
    (auto: bf16 on CPUs with native bf16, else fp32)."""
    folder = Path(path) if path is not None else default_model_path()
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {folder} does not exist")
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise ModelFolderError(f"model folder {folder}: missing {name}")
    config = ModelConfig.from_dict(_read_json(folder / "config.json"), source=str(folder / "config.json"))
    calibration = Calibration.from_dict(_read_json(folder / "calibration.json"), source=str(folder / "calibration.json"))
    metrics = _read_json(folder / "metrics.json")
    spec = get_backbone_spec(config.backbone)
    missing = sorted(f for f in calibration.signals if f not in config.signals)
    if missing:
        raise ModelFolderError(f"{folder / 'calibration.json'}: uses signals {missing} that this model does not produce "
                               f"(it produces {sorted(config.signals)})")
    if spec.feature_dim != config.feature_dim:
        raise ModelFolderError(
            f"{folder / 'config.json'}: feature_dim {config.feature_dim} does not match backbone "
            f"{config.backbone} ({spec.feature_dim})"
        )
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    if config.weights == PRETRAINED_BACKBONE:
        if config.embedding_dim is not None or config.head or config.patch_dim is not None:
            raise ModelFolderError(f"{folder / 'config.json'}: a projection, head or patch head needs {WEIGHTS_FILE}")
        net = build_net(config, pretrained=True)
        digest.update((spec.weights.sha256 or spec.weights.source).encode())
    else:
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelFolderError(f"model folder {folder}: missing {WEIGHTS_FILE}")
        net = build_net(config, pretrained=True)  # the backbone tensors the file does not hold stay pretrained
        _load_safetensors(net, weights)
        digest.update(hashlib.sha256(weights.read_bytes()).digest())
    net.eval()
    return LoadedModel(folder, config, calibration, metrics, net, digest.hexdigest()[:16], resolve_precision(precision))


def build_net(config: ModelConfig, *, pretrained: bool) -> EmbeddingNet:
    backbone = build_backbone(config.backbone, pretrained=pretrained)
    if config.patch_dim is not None and backbone.map_channels is None:
        raise ModelFolderError(f"backbone {config.backbone} gives no feature maps, so it cannot have a patch head")
    return EmbeddingNet(backbone, feature_dim=config.feature_dim, embedding_dim=config.embedding_dim, head=config.head,
                        patch_dim=config.patch_dim)


def _load_safetensors(net: EmbeddingNet, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFolderError(f"{path}: cannot read safetensors ({exc})") from None
    expected = net.loadable_state_dict()
    # the heads have no pretrained source; backbone tensors not in the file are the registry's
    missing = sorted(k for k in set(expected) - set(state) if not k.startswith("backbone."))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFolderError(
            f"{path}: tensors do not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelFolderError(f"{path}: tensor {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")
    net.load_state_dict(state, strict=False)


def save_model_folder(
    folder: str | Path,
    *,
    config: ModelConfig,
    calibration: Calibration,
    metrics: dict[str, Any],
    model_card: str,
    net: EmbeddingNet | None = None,
) -> Path:
    """Write a complete model folder; every file is written atomically."""
    from safetensors.torch import save

    folder = Path(folder)
    if config.weights == WEIGHTS_FILE:
        if net is None:
            raise DetectorError(f"config asks for {WEIGHTS_FILE} but no network was given")
        state = {k: v.detach().contiguous().cpu() for k, v in net.trainable_state_dict().items()}
        atomic_write_bytes(folder / WEIGHTS_FILE, save(state))
    atomic_write_bytes(folder / "config.json", (json.dumps(config.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(folder / "calibration.json", (json.dumps(calibration.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(folder / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    atomic_write_bytes(folder / "MODEL_CARD.md", model_card.encode())
    return folder


