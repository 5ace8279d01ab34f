"""Training configuration: a YAML file plus ``key=value`` overrides (dotted keys, YAML values)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from detector.errors import InvalidInputError

REQUIRED = ("name", "version", "seed", "data", "model", "train", "calibration", "out", "export")


def load_config(path: str | Path, overrides: list[str] = ()) -> dict[str, Any]:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidInputError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(config, dict):
        raise InvalidInputError(f"{path}: expected a mapping at the top level")
    config = apply_overrides(config, overrides)
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise InvalidInputError(f"{path}: missing keys {missing}")
    return config


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    config = copy.deepcopy(config)
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
