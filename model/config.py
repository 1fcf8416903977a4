"""Configuration: OmegaConf presets (`model/presets/*.yaml`) plus Hydra-style dotted overrides.

    cfg = load_config(["preset=run8", "trainer.max_epochs=5", "dataset.root=data/receipts"])

Arguments are as on the command line (`receiptflow train preset=... a.b.c=value ...`), so the seed's
`python runners/train.py preset=efficientnet_b4_lr_optimized models.optimizer.lr=...` lines work
with `receiptflow train` in their place. `preset=NAME` picks `model/presets/NAME.yaml` (or a
YAML file by path, e.g. a run's saved config.yaml; default efficientnet_b4_lr_optimized); the other
`key=value` arguments are applied in order, each value parsed as YAML (numbers, true/false, null,
[lists]). A preset may extend others with `defaults: [other, ...]` (merged first, in order) and
carries a one-line `description:`; neither is part of the resulting config.

The schema below gives every key and its type; the root preset gives every value. An unknown key
is a ConfigError naming the closest valid ones, a value of the wrong type one naming the expected
type, and a few settings are checked against their choices and ranges (`validate`).
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from model.data.transforms import AugmentConfig
from model.errors import DataError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "efficientnet_b4_lr_optimized"
# Preset-file keys that are not settings: what it extends, its one-line description, and the
# `preset:` a saved config records (`preset=runs/x/config.yaml` loads it back; its name is the file's).
RESERVED = ("defaults", "description", "preset")

CHOICES = {
    "models.optimizer.name": ("adam", "adamw"),
    "trainer.precision": ("auto", "32", "bf16", "16"),
    "trainer.accelerator": ("auto", "cpu", "cuda"),
}


class ConfigError(DataError):
    """A bad preset or override: the message names the key and what is wrong, in one line."""


# ---------------------------------------------------------------------------------------------
# Schema: keys and types only (every value is MISSING here; the presets give them).


@dataclass
class EncoderConfig:
    model_name: str = MISSING
    pretrained: bool = MISSING
    weights: Optional[str] = MISSING
    out_indices: list[int] = MISSING


@dataclass
class DecoderConfig:
    inner_channels: int = MISSING
    output_channels: int = MISSING


@dataclass
class PostprocessConfig:
    thresh: float = MISSING
    box_thresh: float = MISSING
    max_candidates: int = MISSING
    unclip_ratio: float = MISSING
    use_polygon: bool = MISSING


@dataclass
class HeadConfig:
    k: float = MISSING
    upscale: int = MISSING
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)


@dataclass
class LossConfig:
    negative_ratio: float = MISSING
    prob_map_loss_weight: float = MISSING
    thresh_map_loss_weight: float = MISSING
    binary_map_loss_weight: float = MISSING
    eps: float = MISSING


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING


@dataclass
class SchedulerConfig:
    T_max: int = MISSING
    eta_min: float = MISSING


@dataclass
class ModelsConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass
class TrainerConfig:
    max_epochs: int = MISSING
    precision: str = MISSING
    grad_clip: Optional[float] = MISSING
    accelerator: str = MISSING
    log_every_n_steps: int = MISSING
    deterministic: bool = MISSING
    eval_workers: int = MISSING


@dataclass
class DatasetConfig:
    root: Optional[str] = MISSING
    train_split: str = MISSING
    val_split: str = MISSING
    folds: Optional[str] = MISSING
    fold: Optional[int] = MISSING
    strict: bool = MISSING
    image_size: int = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    shrink_ratio: float = MISSING
    thresh_min: float = MISSING
    thresh_max: float = MISSING
    min_text_size: float = MISSING


# augment.* are AugmentConfig's fields except `size` (that is dataset.image_size); tuples become lists.
_AUGMENT_TYPES = {"float": float, "int": int, "bool": bool, "str": str, "tuple[float, float]": list[float]}


def _augment_schema() -> type:
    specs = []
    for f in fields(AugmentConfig):
        if f.name == "size":
            continue
        name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if name not in _AUGMENT_TYPES:
            raise TypeError(f"AugmentConfig.{f.name}: type {name} has no config type; add it to _AUGMENT_TYPES")
        specs.append((f.name, _AUGMENT_TYPES[name], field(default=MISSING)))
    return make_dataclass("AugmentSettings", specs)


AugmentSettings = _augment_schema()


@dataclass
class Config:
    preset: str = MISSING
    exp_name: str = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    resume: str = MISSING
    checkpoint_mirror: Optional[str] = MISSING
    wandb: bool = MISSING
    models: ModelsConfig = field(default_factory=ModelsConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    augment: AugmentSettings = field(default_factory=AugmentSettings)  # type: ignore[valid-type]


# ---------------------------------------------------------------------------------------------
# Public API


def load_config(args: Sequence[str] = ()) -> DictConfig:
    """The config for command-line style `args`: `preset=NAME` (at most once) and `key=value`s."""
    presets = [a.partition("=")[2].strip() for a in args if a.partition("=")[0].strip() == "preset"]
    if len(presets) > 1:
        raise ConfigError(f"preset given twice ({presets[0]!r} and {presets[1]!r})")
    preset = presets[0] if presets else DEFAULT_PRESET
    cfg = _merge(OmegaConf.structured(Config), _load_preset(preset, ()), source=f"preset {preset}")
    OmegaConf.update(cfg, "preset", _preset_name(preset))
    cfg = apply_overrides(cfg, [a for a in args if a.partition("=")[0].strip() != "preset"], validated=False)
    _check_complete(cfg, preset)
    validate(cfg)
    return cfg


def apply_overrides(cfg: DictConfig, args: Sequence[str], *, validated: bool = True) -> DictConfig:
    """`key=value` overrides on a config (a run's saved config too): same checks as the command line."""
    if not OmegaConf.is_struct(cfg) or OmegaConf.get_type(cfg) is not Config:
        cfg = _merge(OmegaConf.structured(Config), cfg, source="saved config")
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"bad argument {arg!r}: expected key=value (e.g. models.optimizer.lr=0.0005 or preset=run8)")
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


def list_presets() -> dict[str, str]:
    """{preset name: one-line description} for every file in model/presets/."""
    out = {}
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        raw = _read_yaml(path)
        out[path.stem] = " ".join(str(raw.get("description", "")).split())
    return out


def to_yaml(cfg: DictConfig, *, resolve: bool = False) -> str:
    """The config as YAML; floats keep full precision (shortest round-trip repr)."""
    return OmegaConf.to_yaml(cfg, resolve=resolve)


def augment_config(cfg: DictConfig) -> AugmentConfig:
    """The train pipeline's AugmentConfig: `augment.*` with `size = dataset.image_size`."""
    values = OmegaConf.to_container(cfg.augment, resolve=True)
    hints = {f.name: f.type for f in fields(AugmentConfig)}
    values = {k: tuple(v) if "tuple" in str(hints[k]) else v for k, v in values.items()}
    return AugmentConfig.from_dict({**values, "size": int(cfg.dataset.image_size)})


def target_options(cfg: DictConfig) -> dict[str, float]:
    """Keyword arguments of `make_targets` (and `DetectionDataset(**target_options)`)."""
    d = cfg.dataset
    return {"shrink_ratio": d.shrink_ratio, "thresh_min": d.thresh_min, "thresh_max": d.thresh_max, "min_text_size": d.min_text_size}


def leaf_keys(cfg: DictConfig | None = None) -> list[str]:
    """Every settable dotted key, in schema order."""
    cfg = OmegaConf.structured(Config) if cfg is None else cfg
    out = []

    def walk(node, prefix):
        for k in node.keys():
            child = node._get_node(k)
            if isinstance(child, DictConfig):
                walk(child, f"{prefix}{k}.")
            else:
                out.append(f"{prefix}{k}")

    walk(cfg, "")
    return out


def validate(cfg: DictConfig) -> None:
    """Choices and ranges the types cannot express."""
    for key, choices in CHOICES.items():
        value = str(OmegaConf.select(cfg, key))
        if value not in choices:
            raise ConfigError(f"{key}={value}: expected one of {', '.join(choices)}")
    positive = ("trainer.max_epochs", "dataset.image_size", "dataset.batch_size", "models.optimizer.lr",
                "models.scheduler.T_max", "trainer.log_every_n_steps", "models.decoder.inner_channels",
                "models.decoder.output_channels", "models.head.k", "models.head.postprocess.max_candidates",
                "models.head.postprocess.unclip_ratio")
    for key in positive:
        if not OmegaConf.select(cfg, key) > 0:
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)}: must be > 0")
    for key in ("models.optimizer.weight_decay", "models.scheduler.eta_min", "dataset.num_workers", "trainer.eval_workers"):
        if OmegaConf.select(cfg, key) < 0:
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)}: must be >= 0")
    if cfg.trainer.grad_clip is not None and cfg.trainer.grad_clip <= 0:
        raise ConfigError(f"trainer.grad_clip={cfg.trainer.grad_clip}: must be > 0, or null for no clipping")
    for key in ("models.head.postprocess.thresh", "models.head.postprocess.box_thresh", "dataset.shrink_ratio"):
        if not 0 < OmegaConf.select(cfg, key) < 1:
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)}: must lie between 0 and 1")
    if not 0 <= cfg.dataset.thresh_min < cfg.dataset.thresh_max <= 1:
        raise ConfigError(f"dataset.thresh_min={cfg.dataset.thresh_min}, dataset.thresh_max={cfg.dataset.thresh_max}: "
                          "need 0 <= thresh_min < thresh_max <= 1")
    if cfg.dataset.image_size % 32:
        raise ConfigError(f"dataset.image_size={cfg.dataset.image_size}: must be a multiple of 32 (the backbone's stride)")
    if (cfg.dataset.fold is None) != (cfg.dataset.folds is None):
        raise ConfigError("dataset.folds and dataset.fold go together: the folder `receiptflow split` wrote and a fold index")
    if len(cfg.augment.scale) != 2 or not 0 < cfg.augment.scale[0] <= cfg.augment.scale[1]:
        raise ConfigError(f"augment.scale={list(cfg.augment.scale)}: expected [min, max] with 0 < min <= max")
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve the config: {str(exc).splitlines()[0]}") from None


# ---------------------------------------------------------------------------------------------
# Internals


def _preset_name(preset: str) -> str:
    return Path(preset).stem if _is_path(preset) else preset


def _is_path(preset: str) -> bool:
    return preset.endswith((".yaml", ".yml")) or "/" in preset


def _preset_path(preset: str) -> Path:
    if _is_path(preset):
        path = Path(preset)
        if not path.is_file():
            raise ConfigError(f"preset file {path} does not exist")
        return path
    path = PRESET_DIR / f"{preset}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(preset, names, n=3, cutoff=0.5)
        hint = f"did you mean {_either(close)}?" if close else f"presets: {', '.join(names)}"
        raise ConfigError(f"unknown preset {preset!r}; {hint}")
    return path


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read preset ({str(exc).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a preset is a YAML mapping of config keys")
    return raw


def _load_preset(preset: str, chain: tuple[str, ...]) -> DictConfig:
    """The preset's settings with its `defaults:` merged underneath (not yet type-checked)."""
    path = _preset_path(preset)
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
        merged = OmegaConf.merge(merged, _load_preset(base, chain + (str(path),)))
    return OmegaConf.merge(merged, own)


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
        children = sorted({k[len(key) + 1:].split(".")[0] for k in keys if k.startswith(key + ".")})
        raise ConfigError(f"'{key}' is a section, not a setting{where}; set one of its keys: {', '.join(f'{key}.{c}' for c in children)}")
    raise ConfigError(f"unknown config key '{key}'{where}; {_suggest(key, keys)}")


def _suggest(key: str, keys: list[str]) -> str:
    """'did you mean ...?' with the closest valid keys, or the settings of the section the key is in."""
    lower = {k.lower(): k for k in keys}
    parent, _, last = key.rpartition(".")
    siblings = {k.rpartition(".")[2].lower(): k for k in keys if k.rpartition(".")[0] == parent}
    picks = [lower[key.lower()]] if key.lower() in lower else []  # wrong case: T_Max
    picks += [k for k in keys if k.endswith("." + key)]  # section left out: optimizer.lr
    picks += [siblings[m] for m in difflib.get_close_matches(last.lower(), list(siblings), n=3, cutoff=0.6)]  # typo in the name
    if not picks:  # typo in a section: models.optimzer.lr
        sections = list(dict.fromkeys(k.rpartition(".")[0] for k in keys if "." in k))
        for section in difflib.get_close_matches(parent, sections, n=2, cutoff=0.75):
            picks += [k for k in keys if k == f"{section}.{last}"]
    if not picks:
        picks += [k for k in keys if k.rpartition(".")[2] == last]  # same name elsewhere
    picks = list(dict.fromkeys(picks))[:3]
    if picks:
        return f"did you mean {_either(picks)}?"
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i]) + "."
        children = list(dict.fromkeys(prefix + k[len(prefix):].split(".")[0] for k in keys if k.startswith(prefix)))
        if children:
            return f"'{prefix[:-1]}' has {', '.join(children)}"
    return f"top-level keys: {', '.join(dict.fromkeys(k.split('.')[0] for k in keys))}"


def _either(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


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
        node = cfg._get_node(key) if "." not in key else OmegaConf.select(cfg, key.rsplit(".", 1)[0])._get_node(key.rsplit(".", 1)[1])
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


def _check_complete(cfg: DictConfig, preset: str) -> None:
    missing = [k for k in leaf_keys(cfg) if OmegaConf.is_missing(OmegaConf.select(cfg, k.rsplit(".", 1)[0]) if "." in k else cfg, k.rsplit(".", 1)[-1])]
    if missing:
        raise ConfigError(f"preset {preset} leaves {', '.join(missing)} unset; give them a value (or extend "
                          f"{DEFAULT_PRESET} with `defaults: [{DEFAULT_PRESET}]`)")
