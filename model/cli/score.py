"""`receiptflow score GT PRED`: the competition metric (CLEval detection) of predictions.

receiptflow score jsons/val.json predictions.json          # per-image table and the means
receiptflow score jsons/val.json submission.csv --json     # one JSON object
"""

from __future__ import annotations

import json
from pathlib import Path

from model.errors import DataError


def register(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score predictions (UFO JSON or submission CSV) against UFO ground truth with CLEval",
        description="CLEval detection recall, precision and hmean per image and their means over images "
        "(hmean = val/hmean), plus the dataset-level values from the summed character counts. "
        "Ground-truth images without predictions score as no detections.",
    )
    p.add_argument("gt", help="ground truth, UFO JSON")
    p.add_argument("pred", help="predictions: UFO JSON or a submission CSV (filename,polygons)")
    p.add_argument("--json", action="store_true", help="print one JSON object (means, dataset values, per_image)")
    p.add_argument(
        "--workers", type=int, default=0, metavar="N", help="score images in N processes (default: in this one)"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from model.data.ufo import read_ufo
    from model.metrics import evaluate

    gt, _ = read_ufo(args.gt)
    pred = read_predictions(args.pred)
    result = evaluate(gt, pred, workers=args.workers)
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return 0
    width = max([len("file")] + [len(name) for name in result.per_image])
    print(f"{'file':<{width}}  {'recall':>8}  {'precision':>9}  {'hmean':>8}")
    for name, s in result.per_image.items():
        print(f"{name:<{width}}  {s.recall:>8.4f}  {s.precision:>9.4f}  {s.hmean:>8.4f}")
    print(
        f"{'mean':<{width}}  {result.recall:>8.4f}  {result.precision:>9.4f}  {result.hmean:>8.4f}"
        f"  ({len(result.per_image)} images)"
    )
    print(
        f"{'dataset':<{width}}  {result.dataset_recall:>8.4f}  {result.dataset_precision:>9.4f}  {result.dataset_hmean:>8.4f}"
        "  (summed character counts)"
    )
    return 0


def read_predictions(path: str | Path):
    """UFO JSON or submission CSV, by extension (.json / .csv), else by the first character."""
    from model.data.ufo import read_ufo
    from model.submission import read_submission

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        try:
            with open(path, encoding="utf-8-sig") as f:
                head = f.read(256).lstrip()
        except FileNotFoundError:
            raise DataError(f"{path}: prediction file is missing") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read prediction file ({exc})") from None
        suffix = ".json" if head.startswith("{") else ".csv"
    images, _ = read_ufo(path) if suffix == ".json" else read_submission(path)
    return images
