"""The `receiptflow` dispatcher: light `--help`, one-line errors, and what the options leave to the modules.

Times are measured by tests/benchmarks/bench_cli.py, not asserted here; what is asserted is the
behaviour behind them: which packages a command imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from model.cli import build_parser, command_modules, main

REPO = Path(__file__).resolve().parents[1]
# what `--help` must never import: seconds of start-up (torch, albumentations, kfp) or a
# noticeable part of one
HEAVY = ("torch", "albumentations", "kfp", "timm", "cv2", "scipy", "minio", "numpy", "omegaconf", "grpc")
VERBS = {
    "pipeline": ("compile", "submit", "run"),
    "sweep": ("render", "report", "replay"),
    "config": ("show", "presets"),
    "data": ("push", "pull"),
    "earlystop": ("serve",),
}


def imported_by(*argvs: list[str]) -> set[str]:
    """The HEAVY packages a fresh interpreter holds after running `receiptflow ARGV` for each argv."""
    program = (
        "import contextlib, io, json, sys\n"
        "from model.cli import main\n"
        f"for argv in {[list(a) for a in argvs]!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_help_of_every_command_and_verb_imports_no_heavy_package():
    argvs = [["--help"]]
    for name in command_modules():
        argvs.append([name, "--help"])
        argvs += [[name, verb, "--help"] for verb in VERBS.get(name, ())]
    assert len(argvs) > 20
    assert imported_by(*argvs) == set()


def test_a_command_builds_only_its_own_parser():
    """`main` registers the named command alone; every command for --help or a typo."""
    one = build_parser("score")
    assert set(one._subparsers._group_actions[0].choices) == {"score"}
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(command_modules())


def test_an_unknown_command_lists_them_all(capsys):
    with pytest.raises(SystemExit):
        main(["scor"])
    err = capsys.readouterr().err
    assert "invalid choice: 'scor'" in err and "score" in err and "pipeline" in err


def test_option_defaults_shown_in_help_are_the_modules_own():
    """synth, split and data pass only the options given; their --help shows the modules' defaults."""
    from model.cli import data as cli_data, split as cli_split, synth as cli_synth
    from model.data import folds, synth
    from model.storage import DEFAULT_WORKERS

    assert (cli_synth.DEFAULT_WIDTH, cli_synth.DEFAULT_HEIGHT) == (synth.DEFAULT_WIDTH, synth.DEFAULT_HEIGHT)
    assert cli_split.DEFAULT_K == folds.DEFAULT_K
    assert cli_data.DEFAULT_WORKERS == DEFAULT_WORKERS


# ------------------------------------------------------------------------------- one-line errors


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_an_os_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    pred = tmp_path / "pred.json"
    pred.write_text('{"images": {}}')
    argv = ["submit", str(pred), "-o", str(tmp_path / "missing" / "folder" / "x.csv")]
    (tmp_path / "missing").write_text("a file where a folder should be")
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("receiptflow submit: error: NotADirectoryError: ") and "--debug" in line

    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith(
        "receiptflow submit: error:"
    )
    assert main([*argv, "--debug"]) == 2  # after the command too
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("RECEIPTFLOW_DEBUG", "1")
    assert main(argv) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_programming_error_keeps_its_traceback(monkeypatch):
    """TypeError, AttributeError, ...: a bug, not a bad value; the dispatcher lets it through."""

    def broken(args):
        return None + 1

    from model.cli import score

    monkeypatch.setattr(score, "run", broken)  # register() reads it when main builds the parser
    with pytest.raises(TypeError):
        main(["score", "a.json", "b.json"])


def test_accelerator_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: trainer.accelerator=cuda is valid here")
    assert (
        main(
            ["train", "preset=cpu_tiny", f"output_dir={tmp_path}", "dataset.root=/nowhere", "trainer.accelerator=cuda"]
        )
        == 2
    )
    line = one_line(capsys.readouterr().err)
    assert line.startswith("receiptflow train: error: trainer.accelerator=cuda: no CUDA device")
    assert "use trainer.accelerator=auto or cpu" in line


def test_accelerator_cuda_passes_config_validation():
    """Configs are checked on machines that only submit (components/common.py): no GPU needed there."""
    from model.config import load_config

    assert load_config(["trainer.accelerator=cuda"]).trainer.accelerator == "cuda"


@pytest.mark.parametrize(
    "upscale, fix",
    [
        (8, "set models.head.upscale=4, or models.encoder.out_indices=[2, 3, 4] for upscale=8 (level 2 has stride 8)"),
        (64, "set models.head.upscale=4 (64 is the stride of no level; the levels' strides are [2, 4, 8, 16, 32])"),
    ],
)
def test_head_upscale_that_does_not_fit_the_encoder_is_one_line(upscale, fix, synth_root, tmp_path, capsys):
    rc = main(
        [
            "train",
            "preset=cpu_tiny",
            f"dataset.root={synth_root}",
            f"output_dir={tmp_path}",
            "trainer.max_epochs=1",
            "dataset.num_workers=0",
            f"models.head.upscale={upscale}",
        ]
    )
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(
        f"receiptflow train: error: models.head.upscale={upscale} must equal the stride of the finest "
        "feature level (4: level 1 of models.encoder.out_indices=[1, 2, 3, 4]"
    )
    assert line.endswith(fix)
    assert not (tmp_path / "last.pt").exists()


def test_head_upscale_not_a_power_of_two_is_refused_by_the_config(capsys):
    assert main(["config", "show", "models.head.upscale=6"]) == 2
    assert "models.head.upscale=6: must be a power of two >= 2" in one_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------- convert --split


def sroie_folder(src: Path, n: int) -> Path:
    (src / "img").mkdir(parents=True)
    (src / "box").mkdir()
    for i in range(n):
        Image.new("RGB", (120, 200), (250, 250, 245)).save(src / "img" / f"{i:03d}.jpg", quality=80)
        (src / "box" / f"{i:03d}.csv").write_text("10,10,60,10,60,30,10,30,TOTAL\n10,40,100,40,100,60,10,60,RM 1.50\n")
    return src


@pytest.mark.parametrize("split, counts", [("0,0,1", (0, 0, 6)), ("0,0.5,0.5", (0, 3, 3)), ("0.5,0,0.5", (3, 0, 3))])
def test_convert_with_empty_splits(split, counts, tmp_path, capsys):
    """A test-only root (an unlabelled hold-out set to predict on) and other zero parts: the empty
    splits are written empty, the root checks clean, and the test images are what submit expects."""
    from model.data.ufo import DatasetRoot, read_ufo
    from model.submission import list_test_images

    src, dst = sroie_folder(tmp_path / "src", 6), tmp_path / "dst"
    assert main(["convert", "sroie", str(src), str(dst), "--split", split, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert tuple(summary["images"].values()) == counts and summary["split"] == [float(f) for f in split.split(",")]
    for name, count in zip(("train", "val", "test"), counts):
        images, _ = read_ufo(dst / "jsons" / f"{name}.json")
        assert len(images) == count == len(list((dst / "images" / name).iterdir()))
    assert DatasetRoot(dst).splits() == ["train", "val", "test"]
    assert main(["check", str(dst)]) == 0
    assert len(list_test_images(dst)) == counts[2]


def test_convert_split_still_sums_to_one(tmp_path, capsys):
    src = sroie_folder(tmp_path / "src", 2)
    with pytest.raises(SystemExit):
        main(["convert", "sroie", str(src), str(tmp_path / "dst"), "--split", "0,0,0"])
    assert "fractions must sum to 1 (they sum to 0)" in capsys.readouterr().err
