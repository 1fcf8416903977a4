"""Configuration: OmegaConf presets (`model/presets/*.yaml`) plus Hydra-style dotted overrides.

    cfg = load_config(["preset=run8", "trainer.max_epochs=5", "dataset.root=data/receipts"])

Arguments are as on the command line (`receiptflow train preset=... a.b.c=value ...`), so the seed's
`python runners/train.py preset=efficientnet_b4_lr_optimized models.optimizer.lr=...` lines work
with `receiptflow train` in their place. `preset=NAME` picks `model/presets/NAME.yaml` (or a
YAML file by path, e.g. a run's saved config.yaml; default efficientnet_b4_lr_optimized); the other
`key=value` arguments are applied in order, each value parsed as YAML (numbers, true/false, null,
[lists]). A preset may extend others with `defaults: [other, ...]` (merged first, in order) and
carries a one-line `description:`; neither is part of the resulting config.

The schema (`model.config_schema`) gives every key and its type; the root preset gives every value
(`model.config_presets`). This module merges them and applies the overrides: an unknown key is a
ConfigError naming the closest valid ones, a value of the wrong type one naming the expected type;
`model.config_validate` then checks choices and ranges. Every name of those modules that callers
use is importable from here. Loading a config imports OmegaConf and YAML only (no torch).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from model.config_presets import DEFAULT_PRESET, PRESET_DIR, RESERVED, either, list_presets, load_preset, preset_name
from model.config_schema import (
    AugmentSettings,
    Config,
    DatasetConfig,
    DecoderConfig,
    EncoderConfig,
    HeadConfig,
    LossConfig,
    ModelsConfig,
    OptimizerConfig,
    PostprocessConfig,
    SchedulerConfig,
    TrainerConfig,
    leaf_keys,
)
from model.config_validate import CHOICES, check_complete, validate
from model.errors import ConfigError

if TYPE_CHECKING:
    from model.data.transforms import AugmentConfig

__all__ = [
    "load_config",
    "apply_overrides",
    "list_presets",
    "to_yaml",
    "augment_config",
    "target_options",
    "leaf_keys",
    "validate",
    "ConfigError",
    "DEFAULT_PRESET",
    "PRESET_DIR",
    "RESERVED",
    "CHOICES",
    "Config",
    "ModelsConfig",
    "EncoderConfig",
    "DecoderConfig",
    "HeadConfig",
    "PostprocessConfig",
    "LossConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainerConfig",
    "DatasetConfig",
    "AugmentSettings",
]


def load_config(args: Sequence[str] = ()) -> DictConfig:
    """The config for command-line style `args`: `preset=NAME` (at most once) and `key=value`s."""
    presets = [a.partition("=")[2].strip() for a in args if a.partition("=")[0].strip() == "preset"]
    if len(presets) > 1:
        raise ConfigError(f"preset given twice ({presets[0]!r} and {presets[1]!r})")
    preset = presets[0] if presets else DEFAULT_PRESET
    cfg = _merge(OmegaConf.structured(Config), load_preset(preset), source=f"preset {preset}")
    OmegaConf.update(cfg, "preset", preset_name(preset))
    cfg = apply_overrides(cfg, [a for a in args if a.partition("=")[0].strip() != "preset"], validated=False)
    check_complete(cfg, preset)
    validate(cfg)
    return cfg


def apply_overrides(cfg: DictConfig, args: Sequence[str], *, validated: bool = True) -> DictConfig:
    """`key=value` overrides on a config (a run's saved config too): same checks as the command line."""
    if OmegaConf.get_type(cfg) is not Config:  # a saved config (plain YAML), not one load_config built
        # A key newer than the saved config takes the default preset's value, which keeps the
        # behaviour from before the key existed (e.g. models.optimizer.encoder_lr: null, one rate)
        base = _merge(OmegaConf.structured(Config), load_preset(DEFAULT_PRESET), source=f"preset {DEFAULT_PRESET}")
        cfg = _merge(base, cfg, source="saved config")
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"bad argument {arg!r}: expected key=value (e.g. models.optimizer.lr=0.0005 or preset=run8)"
            )
        if key.startswith(("+", "~")):
            raise ConfigError(f"bad argument {arg!r}: adding or deleting keys is not supported; set an existing key")
        if key == "preset":
            raise ConfigError(f"bad argument {arg!r}: a preset cannot be applied on top of a saved config")
        _check_key(cfg, key)
        parsed = _parse_value(key, value)
        try:
            OmegaConf.update(cfg, key, parsed, merge=False)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{key}={value}: {_type_message(cfg, key, parsed, exc)}") from None
    if validated:
        validate(cfg)
    return cfg


def to_yaml(cfg: DictConfig, *, resolve: bool = False) -> str:
    """The config as YAML; floats keep full precision (shortest round-trip repr)."""
    return OmegaConf.to_yaml(cfg, resolve=resolve)


def augment_config(cfg: DictConfig) -> AugmentConfig:
    """The train pipeline's AugmentConfig: `augment.*` with `size = dataset.image_size`."""
    from model.data.transforms import AugmentConfig  # albumentations and torch: only where augmenting

    values = OmegaConf.to_container(cfg.augment, resolve=True)
    hints = {f.name: f.type for f in fields(AugmentConfig)}
    values = {k: tuple(v) if "tuple" in str(hints[k]) else v for k, v in values.items()}
    return AugmentConfig.from_dict({**values, "size": int(cfg.dataset.image_size)})


def target_options(cfg: DictConfig) -> dict[str, float]:
    """Keyword arguments of `make_targets` (and `DetectionDataset(**target_options)`)."""
    d = cfg.dataset
    return {
        "shrink_ratio": d.shrink_ratio,
        "thresh_min": d.thresh_min,
        "thresh_max": d.thresh_max,
        "min_text_size": d.min_text_size,
    }


# ---------------------------------------------------------------------------------------------
# Merging and overrides: the error messages name the key, the closest valid ones and the expected type


def _merge(cfg: DictConfig, preset: DictConfig, *, source: str) -> DictConfig:
    """Merge `preset` into the typed `cfg`, turning unknown keys and bad types into ConfigErrors."""
    known = set(leaf_keys(cfg))
    flat = _flatten(preset)
    for key in flat:
        if key not in known:
            _check_key(cfg, key, where=f" in {source}")
    try:
        return OmegaConf.merge(cfg, preset)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        value = flat.get(str(key), "?")
        raise ConfigError(f"{source}: {key}={value}: {_type_message(cfg, str(key), value, exc)}") from None


def _flatten(node: DictConfig, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k in node.keys():
        child = node._get_node(k)
        if isinstance(child, DictConfig) and not child._is_none():
            out.update(_flatten(child, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = child._value() if not isinstance(child, ListConfig) else OmegaConf.to_container(child)
    return out


def _check_key(cfg: DictConfig, key: str, where: str = "") -> None:
    keys = leaf_keys(cfg)
    if key in keys:
        return
    sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    parents = {".".join(k.split(".")[:i]) for k in keys for i in range(1, k.count(".") + 1)}
    if key in sections or key in parents:
        children = sorted({k[len(key) + 1 :].split(".")[0] for k in keys if k.startswith(key + ".")})
        raise ConfigError(
            f"'{key}' is a section, not a setting{where}; set one of its keys: {', '.join(f'{key}.{c}' for c in children)}"
        )
    raise ConfigError(f"unknown config key '{key}'{where}; {_suggest(key, keys)}")


def _suggest(key: str, keys: list[str]) -> str:
    """'did you mean ...?' with the closest valid keys, or the settings of the section the key is in."""
    lower = {k.lower(): k for k in keys}
    parent, _, last = key.rpartition(".")
    siblings = {k.rpartition(".")[2].lower(): k for k in keys if k.rpartition(".")[0] == parent}
    picks = [lower[key.lower()]] if key.lower() in lower else []  # wrong case: T_Max
    picks += [k for k in keys if k.endswith("." + key)]  # section left out: optimizer.lr
    picks += [
        siblings[m] for m in difflib.get_close_matches(last.lower(), list(siblings), n=3, cutoff=0.6)
    ]  # typo in the name
    if not picks:  # typo in a section: models.optimzer.lr
        sections = list(dict.fromkeys(k.rpartition(".")[0] for k in keys if "." in k))
        for section in difflib.get_close_matches(parent, sections, n=2, cutoff=0.75):
            picks += [k for k in keys if k == f"{section}.{last}"]
    if not picks:
        picks += [k for k in keys if k.rpartition(".")[2] == last]  # same name elsewhere
    picks = list(dict.fromkeys(picks))[:3]
    if picks:
        return f"did you mean {either(picks)}?"
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i]) + "."
        children = list(dict.fromkeys(prefix + k[len(prefix) :].split(".")[0] for k in keys if k.startswith(prefix)))
        if children:
            return f"'{prefix[:-1]}' has {', '.join(children)}"
    return f"top-level keys: {', '.join(dict.fromkeys(k.split('.')[0] for k in keys))}"


def _parse_value(key: str, value: str) -> Any:
    """A command-line value parsed as YAML, as Hydra does (OmegaConf's float rules: 1e-5 is a float)."""
    if not value.strip():
        return ""
    try:
        node = OmegaConf.from_dotlist([f"v={value}"])._get_node("v")  # unresolved: ${...} stays
    except Exception as exc:
        raise ConfigError(f"{key}={value}: cannot parse the value ({str(exc).splitlines()[0]})") from None
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=False)
    return node._value()


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _type_message(cfg: DictConfig, key: str, value: Any, exc: Exception) -> str:
    expected = None
    try:
        node = (
            cfg._get_node(key)
            if "." not in key
            else OmegaConf.select(cfg, key.rsplit(".", 1)[0])._get_node(key.rsplit(".", 1)[1])
        )
        ref = node._metadata.ref_type if node is not None else None
        expected = _TYPE_NAMES.get(ref)
        if expected is None and "list" in str(ref).lower():
            item = node._metadata.element_type if isinstance(node, ListConfig) else None
            expected = f"a list of {_TYPE_NAMES.get(item, 'values')}".replace("of an ", "of ").replace("of a ", "of ")
            expected = expected.replace("integer", "integers").replace("number", "numbers")
        if expected and node._metadata.optional:
            expected += " or null"
    except Exception:
        pass
    detail = str(exc).splitlines()[0]
    return f"expected {expected}, got {value!r} ({detail})" if expected else detail
