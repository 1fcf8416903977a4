"""The config's schema: every key and its type (the values are MISSING here; the presets give them).

`model.config` merges presets and overrides into `OmegaConf.structured(Config)`, so an unknown key
or a value of the wrong type fails there with a ConfigError. Imports no torch and no
albumentations: `receiptflow config show` and the pipelines' parameter checks stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING, DictConfig, OmegaConf


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
    encoder_lr: Optional[float] = MISSING
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
    tune_postprocess: bool = MISSING


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


@dataclass
class AugmentSettings:
    """`augment.*`: the fields of model.data.transforms.AugmentConfig but `size` (that is
    dataset.image_size), tuples as lists. Written out rather than derived so that loading a config
    does not import albumentations (and with it torch); tests/test_config.py keeps the two equal."""

    affine_p: float = MISSING
    rotate: float = MISSING
    scale: list[float] = MISSING
    shift: float = MISSING
    hflip_p: float = MISSING
    brightness_contrast_p: float = MISSING
    color_jitter_p: float = MISSING
    noise_p: float = MISSING
    blur_p: float = MISSING
    sharpen_p: float = MISSING
    shadow_p: float = MISSING
    fog_p: float = MISSING


@dataclass
class Config:
    preset: str = MISSING
    exp_name: str = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    resume: str = MISSING
    checkpoint_mirror: Optional[str] = MISSING
    init_from: Optional[str] = MISSING
    init_part: str = MISSING
    wandb: bool = MISSING
    models: ModelsConfig = field(default_factory=ModelsConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    augment: AugmentSettings = field(default_factory=AugmentSettings)


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
