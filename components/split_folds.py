"""split_folds: the word-balanced K folds of the dataset's train (+val) images (`model.data.folds`)."""

from kfp.dsl import Artifact, Dataset, Input, Output

from components import component


@component
def split_folds(dataset: Input[Dataset], k: int, seed: int, hold_out: str, folds: Output[Artifact]) -> int:
    """Write folds.json and fold_{i}/{train,val}.json; returns the number of images split.
    `hold_out`: "val" keeps the val split out of every fold (the ensemble's calibration set);
    "none" pools train and val."""
    from model.data.folds import format_manifest, make_folds

    manifest = make_folds(
        dataset.path, folds.path, k=k, seed=seed, strict=False, hold_out=None if hold_out == "none" else hold_out
    )
    print(format_manifest(manifest), flush=True)
    folds.metadata.update({"k": k, "seed": seed, "held_out": hold_out})
    return manifest["images"]
