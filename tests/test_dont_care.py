"""Don't-care words ("illegibility": true, or a "###" text) from UFO JSON through the training targets to CLEval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from model.data.dataset import DetectionDataset
from model.data.transforms import eval_transform
from model.data.ufo import DatasetRoot, Word, read_ufo, write_ufo
from model.errors import DataError
from model.metrics import evaluate

CARE = np.array([[20, 20], [120, 20], [120, 50], [20, 50]], float)
BLUR = np.array([[20, 100], [120, 100], [120, 130], [20, 130]], float)


def test_ufo_keeps_illegibility_and_its_text_and_refuses_a_non_boolean(tmp_path):
    path = tmp_path / "a.json"
    write_ufo(
        {
            "r.jpg": {
                "0001": Word(CARE, "TOTAL"),
                "0002": Word(BLUR, "C4SH?", illegible=True),
                "0003": Word(BLUR, "###"),
            }
        },
        path,
    )
    raw = json.loads(path.read_text())["images"]["r.jpg"]["words"]
    assert (
        "illegibility" not in raw["0001"] and raw["0002"]["illegibility"] is True and "illegibility" not in raw["0003"]
    )
    words = read_ufo(path)[0]["r.jpg"]
    assert [(w.transcription, w.illegible, w.dont_care) for w in words.values()] == [
        ("TOTAL", False, False),
        ("C4SH?", True, True),
        ("###", False, True),
    ]
    raw["0002"]["illegibility"] = "yes"
    path.write_text(json.dumps({"images": {"r.jpg": {"words": raw}}}))
    with pytest.raises(DataError, match=r"a.json: image 'r.jpg': word '0002': \"illegibility\" is not true or false"):
        read_ufo(path)


def test_training_targets_leave_dont_care_words_out_of_the_loss(tmp_path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    Image.new("RGB", (160, 160), "white").save(tmp_path / "images" / "train" / "r.png")
    write_ufo(
        {"r.png": {"0001": Word(CARE, "TOTAL"), "0002": Word(BLUR, "C4SH?", illegible=True)}},
        tmp_path / "jsons" / "train.json",
    )
    item = DetectionDataset(DatasetRoot(tmp_path).load("train"), eval_transform(160))[0]
    prob, mask = item["prob"].numpy(), item["prob_mask"].numpy()
    assert prob[35, 70] == 1 and mask[35, 70] == 1  # the legible word: text, counted
    assert prob[115, 70] == 0 and mask[115, 70] == 0  # the illegible one: no text target, not counted
    assert mask[80, 70] == 1 and mask[150, 150] == 1  # background counts


def test_cleval_ignores_detections_on_illegible_words_and_never_counts_them_missed():
    gt = {"r.jpg": {"0001": Word(CARE, "TOTAL"), "0002": Word(BLUR, "C4SH?", illegible=True)}}
    found_both = {"r.jpg": {"0001": Word(CARE), "0002": Word(BLUR)}}
    found_care = {"r.jpg": {"0001": Word(CARE)}}
    assert evaluate(gt, found_both).hmean == evaluate(gt, found_care).hmean == 1.0
    legible = {"r.jpg": {"0001": Word(CARE, "TOTAL"), "0002": Word(BLUR, "C4SH?")}}
    assert evaluate(legible, found_care).recall < 1.0  # the same word, legible, is missed
