"""prepare_dataset: a dataset root (s3:// or local) → a validated Dataset artifact, its statistics
and a Markdown report of every problem found."""

from typing import NamedTuple

from kfp.dsl import Dataset, Markdown, Metrics, Output

from components import component


@component
def prepare_dataset(
    dataset_uri: str,
    strict: bool,
    dataset: Output[Dataset],
    stats: Output[Metrics],
    report: Output[Markdown],
) -> NamedTuple("DatasetCounts", [("train_images", int), ("val_images", int), ("test_images", int)]):
    """Copy the dataset root to the artifact and validate every split (images decoded).

    Lenient (strict=False): bad images and words are skipped downstream and listed here, all of
    them. Strict: any problem stops the run here, before training, with the full list.
    """
    from collections import namedtuple

    from model.data.ufo import DatasetRoot, split_summary
    from model.errors import DataError
    from model.storage import download

    download(dataset_uri, dataset.path, progress=False)
    root = DatasetRoot(dataset.path)
    summary, problems = {}, []
    for split in ("train", "val", "test"):
        if not root.image_dir(split).is_dir():
            raise DataError(
                f"{dataset_uri}: no images/{split}/ folder; a dataset root has images/{{train,val,test}}/ "
                "and jsons/{train,val}.json (test annotations optional)"
            )
        if split != "test" and not root.json_path(split).is_file():
            raise DataError(f"{dataset_uri}: jsons/{split}.json is missing")
        loaded = root.load(split, strict=False)
        summary[split] = split_summary(loaded)
        problems += [str(p).replace(dataset.path, dataset_uri.rstrip("/")) for p in loaded.report.problems]
        stats.log_metric(f"{split}/images", summary[split]["images"])
        stats.log_metric(f"{split}/words", summary[split]["words"])
    stats.log_metric("problems", len(problems))
    from model.report import dataset_markdown

    with open(report.path, "w", encoding="utf-8") as f:
        f.write(dataset_markdown(dataset_uri, summary, problems))
    for p in problems:
        print(f"skipped: {p}", flush=True)
    if strict and problems:
        raise DataError(f"{dataset_uri}: strict mode and {len(problems)} problem(s): " + "; ".join(problems))
    dataset.metadata.update({"uri": dataset_uri, **{f"{s}_images": v["images"] for s, v in summary.items()}})
    print(
        f"dataset {dataset_uri}: "
        + ", ".join(f"{s} {v['images']} images / {v['words']} words" for s, v in summary.items())
        + f"; {len(problems)} problem(s)",
        flush=True,
    )
    counts = namedtuple("DatasetCounts", ["train_images", "val_images", "test_images"])
    return counts(summary["train"]["images"], summary["val"]["images"], summary["test"]["images"])
