"""`receiptflow pipeline submit|run --resume RUN_ID`: one command that reruns a failed run under its run
id, so its trainings restore their mirrored checkpoints. Fast checks here (the CLI, the checkpoint
check against a local folder and a real S3 server on loopback, submit's order of checks);
tests/test_reliability.py kills a whole local run mid-epoch and resumes it with `--resume`."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from model.cli import build_parser, main
from model.errors import DataError


def _params(*argv: str) -> dict:
    from pipelines.cli import params_of

    return params_of(build_parser().parse_args(["pipeline", "submit", "--host", "http://h", *argv]))


def _free_port() -> int:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checkpoint(root: Path, run_id: str, task: str) -> Path:
    path = root / "runs" / run_id / "checkpoints" / task / "last.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"checkpoint")
    return path


# ---- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", [["submit", "--host", "http://h"], ["run", "--local"]])
def test_resume_is_an_option_of_submit_and_local_run(verb):
    args = build_parser().parse_args(["pipeline", *verb, "--resume", "0f6c2d4e-run"])
    assert args.resume == "0f6c2d4e-run"


def test_resume_sets_run_id_and_agrees_with_the_same_run_id():
    assert _params("--resume", "abc")["run_id"] == "abc"
    assert _params("--param", "run_id=abc", "--resume", "abc")["run_id"] == "abc"
    assert "run_id" not in _params()


def test_resume_refuses_a_different_run_id_from_param_or_params_file(tmp_path):
    with pytest.raises(DataError, match="--resume abc conflicts with run_id=other: --resume sets run_id"):
        _params("--param", "run_id=other", "--resume", "abc")
    (tmp_path / "p.yaml").write_text("run_id: other\n")
    with pytest.raises(DataError, match="conflicts with run_id=other"):
        _params("--params-file", str(tmp_path / "p.yaml"), "--resume", "abc")


@pytest.mark.parametrize("bad", ["a/b", "..", " "])
def test_resume_refuses_an_id_that_is_no_run_id(bad):
    with pytest.raises(DataError, match="expected a plain name"):
        _params("--resume", bad)


# ---- the checkpoint check ----------------------------------------------------------------------------


def _full(**params) -> dict:
    from pipelines.params import signature

    return {name: default for name, (_, default) in signature().items()} | params


def test_a_local_output_with_checkpoints_resumes_and_says_which(tmp_path, capsys):
    from pipelines.resume import check_resumable

    _checkpoint(tmp_path, "r1", "replication")
    _checkpoint(tmp_path, "r1", "fold_2")
    check_resumable(_full(output_uri=str(tmp_path), run_id="r1"))
    assert f"resuming run r1 from {tmp_path}/runs/r1/checkpoints/: replication, fold_2" in capsys.readouterr().out


def test_a_resume_without_checkpoints_is_refused_with_the_fix(tmp_path):
    from pipelines.resume import check_resumable

    _checkpoint(tmp_path, "r1", "replication")
    with pytest.raises(DataError) as err:
        check_resumable(_full(output_uri=str(tmp_path), run_id="r2"))
    msg = str(err.value)
    assert f"no checkpoint under {tmp_path}/runs/r2/checkpoints/" in msg
    assert "KFP run id" in msg and "--param run_id=r2" in msg


def test_checkpoints_on_s3_are_found_by_the_kfp_run_id(s3_server, tmp_path, capsys):
    """A run without run_id publishes under its KFP run id (components/common.py run_prefix)."""
    from components.common import run_prefix
    from pipelines.resume import check_resumable

    kfp_run = "7d5c3a9e-1f2b-4c3d-9e8f-0a1b2c3d4e5f"
    out = f"s3://{s3_server.bucket}/kf"
    prefix = run_prefix(out, "", kfp_run)  # where the failed run's trainings mirrored to
    s3_server.client().put_object(
        s3_server.bucket, prefix.split("/", 3)[3] + "/checkpoints/fold_0/last.pt", io.BytesIO(b"x"), 1
    )
    check_resumable(_full(output_uri=out, run_id=kfp_run))
    assert f"resuming run {kfp_run} from {prefix}/checkpoints/: fold_0" in capsys.readouterr().out
    with pytest.raises(DataError, match="no checkpoint under"):
        check_resumable(_full(output_uri=out, run_id="7d5c3a9e"))


# ---- submit: the check comes first, and an unreachable store only warns ---------------------------------


def test_submit_resume_without_checkpoints_is_refused_before_contacting_kfp(s3_server, capsys):
    host = f"http://127.0.0.1:{_free_port()}"
    rc = main(
        ["pipeline", "submit", "--host", host, "--resume", "gone", "--param", f"output_uri=s3://{s3_server.bucket}"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and f"--resume gone: no checkpoint under s3://{s3_server.bucket}/runs/gone/checkpoints/" in err
    assert "KFP API" not in err


def test_submit_resume_with_checkpoints_goes_on_to_kfp(s3_server, capsys):
    s3_server.client().put_object(s3_server.bucket, "runs/r7/checkpoints/replication/last.pt", io.BytesIO(b"x"), 1)
    host = f"http://127.0.0.1:{_free_port()}"
    rc = main(
        ["pipeline", "submit", "--host", host, "--resume", "r7", "--param", f"output_uri=s3://{s3_server.bucket}"]
    )
    out, err = capsys.readouterr()
    assert "resuming run r7" in out and "replication" in out
    assert rc == 2 and f"{host}: cannot reach the KFP API" in err  # the check passed; nothing listens at the host


def test_submit_resume_with_an_unreachable_store_warns_and_submits(monkeypatch, capsys):
    monkeypatch.setenv("MINIO_ENDPOINT", f"127.0.0.1:{_free_port()}")  # the cluster's MinIO, out of reach here
    monkeypatch.setenv("MINIO_ACCESS_KEY", "k" * 8)
    monkeypatch.setenv("MINIO_SECRET_KEY", "s" * 12)
    monkeypatch.setenv("MINIO_SECURE", "false")
    host = f"http://127.0.0.1:{_free_port()}"
    rc = main(["pipeline", "submit", "--host", host, "--resume", "r7"])
    err = capsys.readouterr().err
    assert "warning: cannot check s3://receiptflow/runs/r7/checkpoints/ from here" in err
    assert rc == 2 and f"{host}: cannot reach the KFP API" in err


# ---- receiptflow train: resume= values and the accelerator, each a one-line error with the fix --------------


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    from model.data.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny")
    write_synthetic_dataset(root, 3, seed=1, workers=1, width=(200, 220), height=(260, 280), progress=False)
    return root


def _train(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "preset=cpu_tiny",
        f"dataset.root={root}",
        f"output_dir={out}",
        "dataset.image_size=64",
        "dataset.batch_size=1",
        "dataset.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.eval_workers=0",
        *extra,
    ]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_resume_to_a_missing_checkpoint_is_one_line_with_the_accepted_values(tiny_root, tmp_path, capsys):
    assert main(_train(tiny_root, tmp_path / "run", f"resume={tmp_path}/gone.pt")) == 2
    err = _one_line_error(capsys)
    assert f"resume={tmp_path}/gone.pt: no such checkpoint file" in err
    assert "resume=auto" in err and "resume=never" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize("value", ["true", "yes"])
def test_resume_true_is_ambiguous_and_says_which_values_are_accepted(tiny_root, tmp_path, capsys, value):
    assert main(_train(tiny_root, tmp_path / "run", f"resume={value}")) == 2
    err = _one_line_error(capsys)
    assert "ambiguous; use resume=auto" in err and "resume=never" in err and "resume=PATH" in err
    assert not (tmp_path / "run").exists()


def test_accelerator_cuda_without_a_gpu_is_one_line_with_the_fix(tiny_root, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    assert main(_train(tiny_root, tmp_path / "run", "trainer.accelerator=cuda")) == 2
    err = _one_line_error(capsys)
    assert "trainer.accelerator=cuda: no CUDA device is visible" in err
    assert "use trainer.accelerator=auto or cpu" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_config_changes_name_the_dotted_keys_and_skip_the_resumable_ones():
    from model.checkpoint import RESUMABLE_CHANGES, config_changes

    saved = {
        "models": {"optimizer": {"lr": 0.003}, "scheduler": {"T_max": 20}},
        "trainer": {"max_epochs": 20},
        "dataset": {"root": "/a", "num_workers": 2},
        "output_dir": "/x",
    }
    requested = {
        "models": {"optimizer": {"lr": 0.001}, "scheduler": {"T_max": 20}, "new_key": 1},
        "trainer": {"max_epochs": 40},
        "dataset": {"root": "/b", "num_workers": 0},
        "output_dir": "/y",
    }
    assert config_changes(saved, requested) == [("models.optimizer.lr", 0.003, 0.001)]
    assert {"trainer.max_epochs", "dataset.num_workers", "trainer.eval_workers", "checkpoint_mirror"} <= set(
        RESUMABLE_CHANGES
    )
    assert not {"models.optimizer.lr", "models.scheduler.T_max", "models.scheduler.eta_min", "seed"} & set(
        RESUMABLE_CHANGES
    )
