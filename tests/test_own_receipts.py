"""docs/own-receipts.md: its four commands parse, and run as written on a Label Studio export of synthetic
receipts (only the preset swapped for a tiny one, so that the training takes seconds)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from model.checkpoint import load_checkpoint
from model.cli import main
from model.data.ufo import DatasetRoot
from tests.test_import_labelstudio import write_labelstudio
from tests.test_runbook import unparsed

PAGE = Path(__file__).resolve().parents[1] / "docs" / "own-receipts.md"


def page_commands() -> list[list[str]]:
    block = re.search(r"```sh\n(.*?)```", PAGE.read_text(), re.S).group(1)
    argvs = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert all(a[0] == "receiptflow" for a in argvs)
    return [a[1:] for a in argvs]


def test_the_four_commands_parse():
    argvs = page_commands()
    assert [a[0] for a in argvs] == ["convert", "check", "train", "predict"]
    assert not unparsed(argvs)


@pytest.mark.slow
def test_the_four_commands_take_a_labelstudio_export_to_predictions(tmp_path, monkeypatch, capsys):
    from model.data.synth import write_synthetic_dataset

    synth = tmp_path / "synth"
    write_synthetic_dataset(
        synth,
        20,
        seed=3,
        splits=(1.0, 0.0, 0.0),
        workers=1,
        width=(300, 360),
        height=(480, 560),
        progress=False,
        overwrite=True,
    )
    labelled = DatasetRoot(synth).load("train")
    export = tmp_path / "export"
    export.mkdir()
    images = {name: (labelled.sizes[name], list(words.values())) for name, words in labelled.images.items()}
    (export / "project-1.json").write_text(json.dumps(write_labelstudio(images)))
    for k, name in enumerate(images, start=1):  # uploads carry Label Studio's 8-hex prefix
        (export / f"{k:08x}-{name}").write_bytes(labelled.path(name).read_bytes())
    (tmp_path / "new-receipts").mkdir()
    monkeypatch.chdir(tmp_path)

    convert, check, train, predict = page_commands()
    assert main(convert) == 0
    assert main(check) == 0
    root = DatasetRoot(tmp_path / "data" / "mine")
    assert sum(len(root.load(s).images) for s in ("train", "val", "test")) == len(images)
    for name in root.load("test").images:
        (tmp_path / "new-receipts" / name).write_bytes(root.load("test").path(name).read_bytes())
    quick = ["preset=cpu_tiny" if a == "preset=cpu_receipts" else a for a in train]
    assert (
        main(
            [
                *quick,
                "dataset.image_size=256",
                "dataset.batch_size=2",
                "dataset.num_workers=0",
                "trainer.max_epochs=2",
                "models.scheduler.T_max=2",
                "trainer.eval_workers=0",
            ]
        )
        == 0
    )
    assert "post-processing: " in capsys.readouterr().out
    assert "tuned" in load_checkpoint(tmp_path / "runs" / "mine" / "best.pt")
    assert main(predict) == 0
    words = json.loads((tmp_path / "words.json").read_text())["images"]
    assert sorted(words) == sorted(root.load("test").images)


def test_convert_help_gives_every_formats_source_layout():
    from model.cli.convert import SOURCES
    from model.data.convert import converter_names

    assert sorted(SOURCES) == converter_names() == ["coco", "cvat", "icdar2015", "labelstudio", "paddleocr", "sroie"]
