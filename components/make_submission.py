"""make_submission: the fused test predictions as the leaderboard CSV (`model.submission`)."""

from kfp.dsl import Artifact, Dataset, Input, Output

from components import component


@component
def make_submission(fused: Input[Artifact], dataset: Input[Dataset], submission: Output[Artifact]) -> int:
    """One row per test image (an empty row for an image nothing was predicted on, e.g. one that
    does not decode: it is named here); the CSV is checked against the test images before it is
    written. Returns the number of rows."""
    from model.data.ufo import read_ufo
    from model.submission import list_test_images, write_submission

    names = list_test_images(dataset.path)
    images, _ = read_ufo(fused.path)
    for name in names:
        if name not in images:
            print(f"{name}: no predictions (the image was skipped); its row is empty", flush=True)
    write_submission({n: images.get(n, {}) for n in names}, submission.path, image_names=names)
    submission.metadata.update({"rows": len(names), "format": "csv"})
    print(f"submission: {len(names)} rows, {sum(len(images.get(n, {})) for n in names)} polygons", flush=True)
    return len(names)
