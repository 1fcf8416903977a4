"""Presets: the YAML files of model/presets/ (or a file by path), their `defaults:` chains, their list.

A preset may extend others with `defaults: [other, ...]` (merged first, in order) and carries a
one-line `description:`; neither is part of the resulting config. Values are not type-checked
here; `model.config` merges the result into the schema.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from model.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "efficientnet_b4_lr_optimized"
# Preset-file keys that are not settings: what it extends, its one-line description, and the
# `preset:` a saved config records (`preset=runs/x/config.yaml` loads it back; its name is the file's).
RESERVED = ("defaults", "description", "preset")


def list_presets() -> dict[str, str]:
    """{preset name: one-line description} for every file in model/presets/."""
    out = {}
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        raw = read_yaml(path)
        out[path.stem] = " ".join(str(raw.get("description", "")).split())
    return out


def preset_name(preset: str) -> str:
    """The name a config records: the preset's, or a preset file's stem."""
    return Path(preset).stem if is_path(preset) else preset


def is_path(preset: str) -> bool:
    return preset.endswith((".yaml", ".yml")) or "/" in preset


def preset_path(preset: str) -> Path:
    if is_path(preset):
        path = Path(preset)
        if not path.is_file():
            raise ConfigError(f"preset file {path} does not exist")
        return path
    path = PRESET_DIR / f"{preset}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(preset, names, n=3, cutoff=0.5)
        hint = f"did you mean {either(close)}?" if close else f"presets: {', '.join(names)}"
        raise ConfigError(f"unknown preset {preset!r}; {hint}")
    return path


def read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read preset ({str(exc).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a preset is a YAML mapping of config keys")
    return raw


def load_preset(preset: str, chain: tuple[str, ...] = ()) -> DictConfig:
    """The preset's settings with its `defaults:` merged underneath (not yet type-checked)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf  # here: `train --help` lists presets with YAML alone

    path = preset_path(preset)
    if str(path) in chain:
        raise ConfigError(f"{path}: presets extend each other in a loop ({' -> '.join(chain + (str(path),))})")
    try:
        node = OmegaConf.load(path)
    except Exception as exc:  # yaml errors
        raise ConfigError(f"{path}: cannot read preset ({str(exc).splitlines()[0]})") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: a preset is a YAML mapping of config keys")
    bases = node.get("defaults", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, ListConfig)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: `defaults` is a list of preset names")
    own = OmegaConf.masked_copy(node, [k for k in node.keys() if k not in RESERVED])
    merged = OmegaConf.create({})
    for base in bases:
        merged = OmegaConf.merge(merged, load_preset(base, chain + (str(path),)))
    return OmegaConf.merge(merged, own)


def either(names: Sequence[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
