"""Config: presets, Hydra-style overrides, error messages, and the seed's command lines."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import yaml

from model.cli import main
from model.config import (
    DEFAULT_PRESET,
    ConfigError,
    augment_config,
    leaf_keys,
    list_presets,
    load_config,
    target_options,
    to_yaml,
)
from model.data.transforms import AugmentConfig
from model.errors import DataError

# The seed report's §7.1 replication command, after `python runners/train.py`.
SEED_RUN8 = [
    "preset=efficientnet_b4_lr_optimized",
    "exp_name=run8",
    "models.optimizer.lr=0.0005134333170096499",
    "models.optimizer.weight_decay=6.797303101020006e-05",
    "models.scheduler.T_max=24",
    "models.scheduler.eta_min=6.388390006720873e-06",
    "models.head.postprocess.thresh=0.29",
    "models.head.postprocess.box_thresh=0.25",
    "trainer.max_epochs=22",
]
RUN8 = {
    "lr": 0.0005134333170096499,
    "weight_decay": 6.797303101020006e-05,
    "T_max": 24,
    "eta_min": 6.388390006720873e-06,
}
RUN3 = {
    "lr": 0.0003845588887231477,
    "weight_decay": 0.00013939498132089153,
    "T_max": 22,
    "eta_min": 1.8596851896215065e-05,
}


def hparams(cfg) -> dict:
    return {
        "lr": cfg.models.optimizer.lr,
        "weight_decay": cfg.models.optimizer.weight_decay,
        "T_max": cfg.models.scheduler.T_max,
        "eta_min": cfg.models.scheduler.eta_min,
    }


def test_every_preset_loads_and_sets_every_key():
    presets = list_presets()
    assert {DEFAULT_PRESET, "run8", "run3", "cpu_tiny"} <= set(presets)
    assert all(presets.values()), "every preset has a description"
    for name in presets:
        cfg = load_config([f"preset={name}"])
        assert cfg.preset == name
        resolved = yaml.safe_load(to_yaml(cfg, resolve=True))
        assert resolved["exp_name"] == name and resolved["output_dir"] == f"runs/{name}"
        assert "defaults" not in resolved and "description" not in resolved


def test_default_preset_is_the_seed_baseline():
    cfg = load_config()
    assert cfg.preset == DEFAULT_PRESET
    assert cfg.models.encoder.model_name == "efficientnet_b4"
    assert list(cfg.models.encoder.out_indices) == [1, 2, 3, 4]
    pp = cfg.models.head.postprocess
    assert (pp.thresh, pp.box_thresh, pp.max_candidates) == (0.29, 0.25, 600)
    loss = cfg.models.loss
    assert (
        loss.negative_ratio,
        loss.prob_map_loss_weight,
        loss.thresh_map_loss_weight,
        loss.binary_map_loss_weight,
    ) == (3, 5, 10, 1)
    assert cfg.trainer.max_epochs == 22 and cfg.dataset.image_size == 960 and cfg.dataset.root is None


def test_augment_section_matches_augment_config_defaults():
    cfg = load_config()
    defaults = asdict(AugmentConfig())
    defaults.pop("size")
    assert set(cfg.augment) == set(defaults)
    aug = augment_config(cfg)
    assert aug == AugmentConfig(size=960)  # tuples back as tuples
    assert augment_config(load_config(["dataset.image_size=640", "augment.scale=[0.9,1.1]"])) == AugmentConfig(
        size=640, scale=(0.9, 1.1)
    )
    assert target_options(cfg) == {"shrink_ratio": 0.4, "thresh_min": 0.3, "thresh_max": 0.7, "min_text_size": 8}


def test_augment_schema_lists_augment_config_fields():
    """The schema writes AugmentConfig's fields out (loading a config must not import albumentations):
    same names, same order, same types (tuples as lists)."""
    from dataclasses import fields

    from model.config import AugmentSettings

    as_config = {"tuple[float, float]": "list[float]"}
    expected = [(f.name, as_config.get(str(f.type), str(f.type))) for f in fields(AugmentConfig) if f.name != "size"]
    assert [(f.name, str(f.type)) for f in fields(AugmentSettings)] == expected


def test_loading_a_config_imports_no_torch():
    """`config show`, the pipelines' parameter checks and `train --help` stay fast."""
    import subprocess
    import sys

    program = (
        "import sys; from model.config import load_config, to_yaml; to_yaml(load_config(['preset=run8'])); "
        "print(sorted(m for m in ('torch', 'albumentations', 'timm', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_presets_hold_the_seed_values_to_full_precision():
    for name, expected in (("run8", RUN8), ("run3", RUN3)):
        cfg = load_config([f"preset={name}"])
        assert hparams(cfg) == expected
        assert cfg.models.head.postprocess.thresh == 0.29 and cfg.models.head.postprocess.box_thresh == 0.25
        assert cfg.trainer.max_epochs == 22
        assert cfg.models.encoder.model_name == "efficientnet_b4"  # inherited from the base preset


def test_seed_command_line_loads_exact_values():
    cfg = load_config(SEED_RUN8)
    assert hparams(cfg) == RUN8
    assert cfg.exp_name == "run8" and cfg.output_dir == "runs/run8"
    # the seed's line also passes wandb=true: accepted
    assert load_config(SEED_RUN8 + ["wandb=true"]).wandb is True
    # same config as the run8 preset, apart from the names
    a = yaml.safe_load(to_yaml(cfg, resolve=True))
    b = yaml.safe_load(to_yaml(load_config(["preset=run8"]), resolve=True))
    for d in (a, b):
        del d["preset"], d["exp_name"], d["output_dir"]
    assert a == b


def test_config_show_prints_the_seed_values_verbatim(capsys):
    assert main(["config", "show", *SEED_RUN8, "--resolve"]) == 0
    out = capsys.readouterr().out
    for arg in SEED_RUN8[1:]:
        key, value = arg.split("=")
        assert f"  {key.rsplit('.', 1)[-1]}: {value}\n" in out or f"{key}: {value}\n" in out, arg
    shown = yaml.safe_load(out)
    assert shown["models"]["optimizer"]["lr"] == 0.0005134333170096499
    assert shown["models"]["scheduler"]["eta_min"] == 6.388390006720873e-06
    assert shown["output_dir"] == "runs/run8"


def test_config_presets_command(capsys):
    assert main(["config", "presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(list_presets())
    assert any(line.startswith("run8 ") and "Run 8" in line for line in lines)


def test_overrides_parse_like_yaml():
    cfg = load_config(
        [
            "trainer.grad_clip=1.5",
            "models.encoder.pretrained=false",
            "models.encoder.weights=/w/b4.pth",
            "models.encoder.out_indices=[2,3,4]",
            "trainer.precision=32",
            "models.optimizer.lr=1e-4",
            "dataset.root=s3://bucket/data",
            "trainer.grad_clip=null",
            "seed=7",
        ]
    )
    assert cfg.trainer.grad_clip is None  # later overrides win
    assert cfg.models.encoder.pretrained is False and cfg.models.encoder.weights == "/w/b4.pth"
    assert list(cfg.models.encoder.out_indices) == [2, 3, 4]
    assert cfg.trainer.precision == "32" and cfg.models.optimizer.lr == 1e-4 and cfg.seed == 7
    assert cfg.dataset.root == "s3://bucket/data"
    assert load_config(["models.scheduler.eta_min=1"]).models.scheduler.eta_min == 1.0  # int -> float


def test_exp_name_flows_into_output_dir():
    cfg = load_config(["preset=run3", "exp_name=fold0"])
    assert cfg.output_dir == "runs/fold0"
    assert load_config(["output_dir=/mnt/out"]).output_dir == "/mnt/out"


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("models.optimizer.lrr=0.1", "unknown config key 'models.optimizer.lrr'; did you mean models.optimizer.lr?"),
        ("optimizer.lr=0.1", "did you mean models.optimizer.lr?"),
        ("models.scheduler.T_Max=24", "did you mean models.scheduler.T_max?"),
        ("models.optimzer.lr=0.1", "did you mean models.optimizer.lr?"),
        ("models.foo.bar=1", "'models' has models.encoder, models.decoder"),
        ("models.optimizer=1", "'models.optimizer' is a section"),
    ],
)
def test_unknown_keys_name_the_closest(arg, expected):
    with pytest.raises(ConfigError) as exc:
        load_config([arg])
    assert expected in str(exc.value)
    assert isinstance(exc.value, DataError) and isinstance(exc.value, ValueError)


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs=abc: expected an integer, got 'abc'"),
        ("models.optimizer.lr=fast", "models.optimizer.lr=fast: expected a number, got 'fast'"),
        ("models.encoder.out_indices=[1,x]", "expected a list of integers"),
        ("trainer.precision=64", "trainer.precision=64: expected one of auto, 32, bf16, 16"),
        ("models.optimizer.name=sgd", "expected one of adam, adamw"),
        ("dataset.image_size=1000", "multiple of 32"),
        ("dataset.batch_size=0", "must be > 0"),
        ("dataset.fold=1", "dataset.folds and dataset.fold go together"),
        ("lr", "expected key=value"),
        ("preset=run9", "unknown preset 'run9'; did you mean run8"),
        ("output_dir=${nope}", "cannot resolve"),
    ],
)
def test_bad_values_are_clear(arg, expected):
    with pytest.raises(ConfigError) as exc:
        load_config([arg])
    assert expected in str(exc.value)


def test_cli_reports_config_errors(capsys):
    assert main(["config", "show", "models.optimizer.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean models.optimizer.lr?" in err and "Traceback" not in err


def test_preset_files_extend_and_are_checked(tmp_path):
    base = tmp_path / "mine.yaml"
    base.write_text("defaults: [run8]\ndescription: mine\ntrainer:\n  max_epochs: 3\n")
    cfg = load_config([f"preset={base}"])
    assert cfg.preset == "mine" and cfg.trainer.max_epochs == 3 and hparams(cfg) == RUN8
    # a resolved config written by `config show --resolve` loads back as a preset
    saved = tmp_path / "saved.yaml"
    saved.write_text(to_yaml(cfg, resolve=True))
    again = load_config([f"preset={saved}"])
    assert hparams(again) == RUN8 and again.trainer.max_epochs == 3 and again.exp_name == "mine"
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: [run8]\nmodels:\n  optimizer:\n    lrr: 0.1\n")
    with pytest.raises(
        ConfigError, match=r"unknown config key 'models.optimizer.lrr' in preset .*did you mean models.optimizer.lr\?"
    ):
        load_config([f"preset={bad}"])
    typo = tmp_path / "typo.yaml"
    typo.write_text("defaults: [run8]\ntrainer:\n  max_epochs: many\n")
    with pytest.raises(ConfigError, match="trainer.max_epochs=many: expected an integer"):
        load_config([f"preset={typo}"])
    partial = tmp_path / "partial.yaml"
    partial.write_text("trainer:\n  max_epochs: 3\n")
    with pytest.raises(ConfigError, match="leaves .* unset"):
        load_config([f"preset={partial}"])
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"defaults: [{loop}]\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config([f"preset={loop}"])


def test_leaf_keys_cover_the_seed_names():
    keys = set(leaf_keys())
    for key in (
        "exp_name",
        "models.optimizer.lr",
        "models.optimizer.weight_decay",
        "models.scheduler.T_max",
        "models.scheduler.eta_min",
        "models.head.postprocess.thresh",
        "models.head.postprocess.box_thresh",
        "models.head.postprocess.max_candidates",
        "trainer.max_epochs",
    ):
        assert key in keys


@pytest.mark.parametrize(
    "arg, message",
    [
        ("models.optimizer.lrr=0.1", "unknown config key 'models.optimizer.lrr'; did you mean models.optimizer.lr?"),
        ("models.optimizer.lr=0", "models.optimizer.lr=0.0: must be > 0"),
        ("models.scheduler.T_max=0", "models.scheduler.T_max=0: must be > 0"),
        ("models.head.postprocess.thresh=1.2", "models.head.postprocess.thresh=1.2: must lie between 0 and 1"),
        (
            "dataset.root=s3://receiptflow/datasets/x",
            "training reads a local dataset root; copy it first with "
            "`receiptflow data pull s3://receiptflow/datasets/x DIR`",
        ),
    ],
)
def test_train_refuses_bad_parameters_before_any_work(arg, message, tmp_path, capsys):
    from model.cli import main

    assert main(["train", f"output_dir={tmp_path / 'run'}", "dataset.root=/nowhere", arg]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_refuses_a_preset_that_does_not_exist(capsys):
    from model.cli import main

    assert main(["train", "preset=run9"]) == 2
    assert "run9" in capsys.readouterr().err


def test_a_saved_config_older_than_a_key_loads_with_the_behaviour_it_was_trained_with():
    """A checkpoint's config from before models.optimizer.encoder_lr existed (a user's older run) still
    loads for predict/score/resume, with the default preset's value for the new key: null, one rate."""
    from omegaconf import OmegaConf

    from model.config import apply_overrides

    old = OmegaConf.to_container(load_config(["preset=cpu_tiny", "models.optimizer.lr=0.002"]), resolve=True)
    del old["models"]["optimizer"]["encoder_lr"]
    cfg = apply_overrides(OmegaConf.create(old), ["dataset.num_workers=0"])
    assert cfg.models.optimizer.encoder_lr is None
    assert cfg.models.optimizer.lr == 0.002 and cfg.models.encoder.model_name == "test_efficientnet", (
        "its own values stay"
    )
    with pytest.raises(ConfigError, match="models.optimizer.nope"):
        apply_overrides(OmegaConf.create({**old, "models": {**old["models"], "optimizer": {"nope": 1}}}), [])
