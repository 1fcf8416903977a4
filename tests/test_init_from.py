"""`init_from=CHECKPOINT`: a fresh run from another run's weights (whole model or encoder only), with real
tiny cpu_tiny trainings in subprocesses, and an s3:// checkpoint through a real S3 server on loopback.

A run that is initialised and then trains one epoch at lr 1e-12 still has (to 1e-7) the parameters
it started with: that is how the tests see the weights at step 0 without a hook into the loop.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint
from tests.conftest import slow_fixture
from tests.test_train import args, run_train

FROZEN = ("models.optimizer.lr=1e-12", "trainer.max_epochs=1")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from model.data.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(
        root, 6, seed=5, splits=(0.5, 0.25, 0.25), workers=1, width=(300, 340), height=(420, 480), progress=False
    )
    return root


@slow_fixture(scope="module")
def source(data, tmp_path_factory) -> Path:
    """A trained run's last.pt (seed 3, lr 3e-3: far from any fresh init)."""
    out = tmp_path_factory.mktemp("source")
    proc = run_train(args(data, out, "trainer.max_epochs=1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "last.pt"


@slow_fixture(scope="module")
def whole(data, source, tmp_path_factory) -> tuple[Path, str]:
    """A run initialised from `source` (every weight), one frozen epoch: (output_dir, stdout)."""
    out = tmp_path_factory.mktemp("whole")
    # pretrained=true: test_efficientnet has no hub weights, so this run fails if it tries the hub
    proc = run_train(args(data, out, f"init_from={source}", "seed=11", "models.encoder.pretrained=true", *FROZEN))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc.stdout


def _params(state: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters only: BatchNorm's running statistics move in a training epoch even at lr 1e-12."""
    return {k: v for k, v in state.items() if k.startswith(prefix) and "running_" not in k and "num_batches" not in k}


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-7, rtol=0) for k in a)


def test_whole_model_init_starts_a_fresh_run_from_the_source_weights(source, whole):
    out, stdout = whole
    src = load_checkpoint(source)
    ckpt = load_checkpoint(out / "last.pt")
    assert _close(_params(ckpt["model"]), _params(src["model"]))
    assert ckpt["epoch"] == 1  # a fresh run: epoch 1 of its own, not the source's epoch 2
    assert [m["epoch"] for m in ckpt["history"]] == [1]
    assert ckpt["init"] == {"from": str(source), "part": "model", "epoch": 1}
    assert f"initialised from {source} (every weight" in stdout and "epoch 1 with a new optimizer" in stdout
    assert f"init_from overrides models.encoder.pretrained=true: the encoder's weights come from {source}" in stdout
    assert f"init_from: {source}" in (out / "config.yaml").read_text()


def test_encoder_init_copies_the_encoder_and_leaves_decoder_and_head_fresh(data, source, tmp_path):
    """Another decoder width: init_part=encoder takes only the encoder, so it fits; the decoder and head
    are what a run without init_from starts with (the same seed builds the same fresh modules)."""
    other = ("models.decoder.inner_channels=32", *FROZEN)
    inited = run_train(args(data, tmp_path / "enc", f"init_from={source}", "init_part=encoder", *other))
    fresh = run_train(args(data, tmp_path / "fresh", *other))
    assert inited.returncode == 0 and fresh.returncode == 0, inited.stderr[-2000:] + fresh.stderr[-2000:]
    got = load_checkpoint(tmp_path / "enc" / "last.pt")["model"]
    src = load_checkpoint(source)["model"]
    new = load_checkpoint(tmp_path / "fresh" / "last.pt")["model"]
    assert _close(_params(got, "encoder."), _params(src, "encoder."))
    assert not _close(_params(new, "encoder."), _params(src, "encoder."))  # the test can tell them apart
    for part in ("decoder.", "head."):
        assert _close(_params(got, part), _params(new, part))
    assert "(the encoder; decoder and head fresh" in inited.stdout


def test_a_checkpoint_of_another_shape_is_one_line_naming_the_keys_and_the_fix(data, source, tmp_path):
    proc = run_train(args(data, tmp_path / "o", f"init_from={source}", "models.decoder.inner_channels=32"))
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"init_from={source}: the checkpoint's weights do not fit this model" in err
    assert "8 with other shapes (checkpoint vs model): decoder.lateral.0.weight [64, 24, 1, 1] vs [32, 24, 1, 1]" in err
    assert "(+" in err  # more than the few named: the count says so
    assert "train with the checkpoint's settings (models.decoder.inner_channels=64)" in err
    assert "or init_part=encoder" in err
    assert not (tmp_path / "o" / "last.pt").exists()


@pytest.mark.slow
def test_a_missing_checkpoint_is_one_line_before_anything_is_written(data, tmp_path):
    proc = run_train(args(data, tmp_path / "o", f"init_from={tmp_path / 'nope.pt'}"))
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and f"init_from={tmp_path / 'nope.pt'}: no such checkpoint file" in err, err
    assert not (tmp_path / "o").exists()


def test_an_s3_checkpoint_is_downloaded_and_not_left_in_the_output(data, source, s3_server, tmp_path):
    s3_server.client().fput_object(s3_server.bucket, "pretrained/last.pt", str(source))
    uri = f"s3://{s3_server.bucket}/pretrained/last.pt"
    proc = run_train(args(data, tmp_path / "o", f"init_from={uri}", *FROZEN))
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / "o" / "last.pt")
    assert _close(_params(ckpt["model"]), _params(load_checkpoint(source)["model"]))
    assert ckpt["init"]["from"] == uri and f"initialised from {uri}" in proc.stdout
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"last.pt", "best.pt", "metrics.jsonl", "config.yaml"}
    missing = run_train(args(data, tmp_path / "m", f"init_from=s3://{s3_server.bucket}/pretrained/nope.pt"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert "init_from=s3://receiptflow/pretrained/nope.pt: no such object" in missing.stderr


def test_a_run_that_resumes_takes_last_pt_not_init_from_again(data, whole, source, tmp_path):
    out, _ = whole
    proc = run_train(
        args(
            data,
            out,
            f"init_from={source}",
            "seed=11",
            "models.encoder.pretrained=true",
            "models.optimizer.lr=1e-12",
            "trainer.max_epochs=2",
        )
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"init_from={source} is not applied again: the run resumes from {out / 'last.pt'}" in proc.stdout
    assert "initialised from" not in proc.stdout
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["init"]["from"] == str(source)  # the record survives the resume
    # another init_from beside a last.pt would be silently ignored: refused, as a changed hyperparameter is
    other = run_train(
        args(
            data,
            out,
            f"init_from={tmp_path}/x.pt",
            "seed=11",
            "models.encoder.pretrained=true",
            "models.optimizer.lr=1e-12",
            "trainer.max_epochs=3",
        )
    )
    assert (
        other.returncode == 2
        and "cannot resume" in other.stderr
        and f"init_from {source} -> {tmp_path}/x.pt" in other.stderr
    )


def test_encoder_lr_gives_the_encoder_its_own_rate(data, source, tmp_path):
    """models.optimizer.encoder_lr: from the source weights, an epoch with the encoder at 1e-12 and the
    rest at 3e-3 leaves the encoder where it started and moves the decoder; the logged lr is `lr`."""
    out = tmp_path / "split"
    proc = run_train(
        args(data, out, f"init_from={source}", "models.optimizer.encoder_lr=1e-12", "trainer.max_epochs=1")
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    src, got = load_checkpoint(source)["model"], load_checkpoint(out / "last.pt")
    assert _close(_params(got["model"], "encoder."), _params(src, "encoder."))
    assert not _close(_params(got["model"], "decoder."), _params(src, "decoder."))
    assert [len(g["params"]) for g in got["optimizer"]["param_groups"]][1] == len(list(_params(src, "encoder.")))
    assert got["history"][0]["lr"] == 0.003
