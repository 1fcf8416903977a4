"""`receiptflow eval CHECKPOINT [key=value ...]`: the competition metric of a checkpoint on a split."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="score a checkpoint on a split with CLEval (val/hmean, precision, recall)",
        description="Run a checkpoint over a split of dataset.root and print the CLEval means over images. "
        "key=value arguments override the checkpoint's config (dataset.root=..., models.head.postprocess.thresh=...).",
    )
    p.add_argument("checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--split", default="val", help="split to score (default val)")
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch
    from omegaconf import OmegaConf

    from model.data.splits import load_split
    from model.evaluate import validate
    from model.predict import eval_loader, load_model

    model, cfg = load_model(args.checkpoint, args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    split = load_split(cfg.dataset, args.split)
    result = validate(
        model.to(device),
        eval_loader(split, cfg),
        split,
        device,
        postprocess_options=OmegaConf.to_container(cfg.models.head.postprocess),
        workers=cfg.trainer.eval_workers,
        tta_flip=args.tta,
        progress=True,
    )
    values = {
        f"{args.split}/hmean": result.hmean,
        f"{args.split}/precision": result.precision,
        f"{args.split}/recall": result.recall,
    }
    print(json.dumps(values) if args.json else " ".join(f"{k}={v!r}" for k, v in values.items()))
    return 0
