"""predict: a trained model's words and probability maps on the test images and on the
calibration images (UFO JSON with scores, and `model.probmaps` folders, for the ensemble)."""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components import component


@component
def predict(
    model: Input[Model],
    dataset: Input[Dataset],
    split: str,
    calibration: str,
    predictions: Output[Artifact],
    maps: Output[Artifact],
    calibration_predictions: Output[Artifact],
    calibration_maps: Output[Artifact],
) -> NamedTuple("Predicted", [("words", int), ("calibration_words", int)]):
    """Predict every image of `split` and of the `calibration` split ("none": no calibration set;
    its outputs are then empty); returns the number of words found in each."""
    from collections import namedtuple
    from pathlib import Path

    from model.data.ufo import write_ufo
    from model.predict import predict as run_prediction

    def run(which: str, words_out, maps_out) -> int:
        Path(maps_out.path).mkdir(parents=True, exist_ok=True)
        if which == "none":
            write_ufo({}, words_out.path)
            return 0
        images = run_prediction(f"{model.path}/best.pt", dataset.path, split=which, scores=True, maps_dir=maps_out.path)
        write_ufo(images, words_out.path)
        words = sum(len(w) for w in images.values())
        for artifact in (words_out, maps_out):
            artifact.metadata.update({"split": which, "images": len(images), "fold": model.metadata.get("fold")})
        words_out.metadata["words"] = words
        print(f"predicted {words} words on {len(images)} {which} images", flush=True)
        return words

    found = run(split, predictions, maps)
    calibrated = run(calibration, calibration_predictions, calibration_maps)
    return namedtuple("Predicted", ["words", "calibration_words"])(found, calibrated)
