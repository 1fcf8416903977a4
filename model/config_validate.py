"""Checks of a merged config that its types cannot express: choices, ranges, completeness."""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from model.config_presets import DEFAULT_PRESET
from model.config_schema import leaf_keys
from model.errors import ConfigError

CHOICES = {
    "models.optimizer.name": ("adam", "adamw"),
    "trainer.precision": ("auto", "32", "bf16", "16"),
    # Whether a GPU is there is checked where training starts (model/train.py), not here: configs are
    # also checked on machines without one that submit runs to a cluster (components/common.py).
    "trainer.accelerator": ("auto", "cpu", "cuda"),
    "init_part": ("model", "encoder"),  # what init_from copies (model.checkpoint.INIT_PARTS)
}


def validate(cfg: DictConfig) -> None:
    """Choices and ranges the types cannot express."""
    for key, choices in CHOICES.items():
        value = str(OmegaConf.select(cfg, key))
        if value not in choices:
            raise ConfigError(f"{key}={value}: expected one of {', '.join(choices)}")
    positive = (
        "trainer.max_epochs",
        "dataset.image_size",
        "dataset.batch_size",
        "models.optimizer.lr",
        "models.scheduler.T_max",
        "trainer.log_every_n_steps",
        "models.decoder.inner_channels",
        "models.decoder.output_channels",
        "models.head.k",
        "models.head.postprocess.max_candidates",
        "models.head.postprocess.unclip_ratio",
    )
    for key in positive:
        if not OmegaConf.select(cfg, key) > 0:
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)}: must be > 0")
    for key in (
        "models.optimizer.weight_decay",
        "models.scheduler.eta_min",
        "dataset.num_workers",
        "trainer.eval_workers",
    ):
        if OmegaConf.select(cfg, key) < 0:
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)}: must be >= 0")
    if cfg.models.optimizer.encoder_lr is not None and not cfg.models.optimizer.encoder_lr > 0:
        raise ConfigError(
            f"models.optimizer.encoder_lr={cfg.models.optimizer.encoder_lr}: must be > 0, or null for models.optimizer.lr"
        )
    if cfg.trainer.grad_clip is not None and cfg.trainer.grad_clip <= 0:
        raise ConfigError(f"trainer.grad_clip={cfg.trainer.grad_clip}: must be > 0, or null for no clipping")
    for key in ("models.head.postprocess.thresh", "models.head.postprocess.box_thresh", "dataset.shrink_ratio"):
        if not 0 < OmegaConf.select(cfg, key) < 1:
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)}: must lie between 0 and 1")
    if not 0 <= cfg.dataset.thresh_min < cfg.dataset.thresh_max <= 1:
        raise ConfigError(
            f"dataset.thresh_min={cfg.dataset.thresh_min}, dataset.thresh_max={cfg.dataset.thresh_max}: "
            "need 0 <= thresh_min < thresh_max <= 1"
        )
    if cfg.dataset.image_size % 32:
        raise ConfigError(
            f"dataset.image_size={cfg.dataset.image_size}: must be a multiple of 32 (the backbone's stride)"
        )
    upscale = cfg.models.head.upscale
    if upscale < 2 or 2 ** round(math.log2(upscale)) != upscale:
        # that it equals the stride of the finest encoder level is checked when the model is built
        # (model/net: the strides come from timm), with the values that fit
        raise ConfigError(
            f"models.head.upscale={upscale}: must be a power of two >= 2, the stride of the "
            "finest level of models.encoder.out_indices (4 for the presets' [1, 2, 3, 4])"
        )
    if (cfg.dataset.fold is None) != (cfg.dataset.folds is None):
        raise ConfigError(
            "dataset.folds and dataset.fold go together: the folder `receiptflow split` wrote and a fold index"
        )
    if len(cfg.augment.scale) != 2 or not 0 < cfg.augment.scale[0] <= cfg.augment.scale[1]:
        raise ConfigError(f"augment.scale={list(cfg.augment.scale)}: expected [min, max] with 0 < min <= max")
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve the config: {str(exc).splitlines()[0]}") from None


def check_complete(cfg: DictConfig, preset: str) -> None:
    """Every key has a value (a preset that does not extend the default may leave some out)."""
    missing = [
        k
        for k in leaf_keys(cfg)
        if OmegaConf.is_missing(OmegaConf.select(cfg, k.rsplit(".", 1)[0]) if "." in k else cfg, k.rsplit(".", 1)[-1])
    ]
    if missing:
        raise ConfigError(
            f"preset {preset} leaves {', '.join(missing)} unset; give them a value (or extend "
            f"{DEFAULT_PRESET} with `defaults: [{DEFAULT_PRESET}]`)"
        )
