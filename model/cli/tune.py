"""`receiptflow tune CHECKPOINT [key=value ...]`: choose a checkpoint's post-processing on labelled images."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="choose a checkpoint's thresh/box_thresh/unclip_ratio on a labelled split and store them in it",
        description="Run a checkpoint over a labelled split of dataset.root once, score a grid of post-processing "
        "settings around its own (thresh, box_thresh, unclip_ratio) with CLEval, and store the best in the "
        "checkpoint with the H-Mean it reached: predict, eval, export and the pipeline use it from then on "
        "(models.head.postprocess.*=... still overrides it). `receiptflow train` does this to best.pt after the "
        "last epoch (trainer.tune_postprocess). key=value arguments override the checkpoint's config "
        "(dataset.root=..., dataset.folds=..., dataset.fold=...).",
    )
    p.add_argument("checkpoint", help="best.pt or last.pt of `receiptflow train`; rewritten in place unless --dry-run")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument(
        "--split", default="val", help="labelled split to choose on (default val; never the split you report)"
    )
    p.add_argument(
        "--test",
        metavar="SPLIT",
        help="also score SPLIT with the old and the chosen settings (shown, not used to choose)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the choice, leave the checkpoint as it is")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from model.data.splits import load_split
    from model.evaluate import validate
    from model.predict import eval_loader, load_model
    from model.tune import store, tune

    model, cfg = load_model(args.checkpoint, args.overrides, tuned=False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    result = tune(
        model,
        cfg,
        load_split(cfg.dataset, args.split),
        device=device,
        workers=cfg.trainer.eval_workers,
        progress=not args.json,
    )
    out = result.to_json()
    if args.test:
        test = load_split(cfg.dataset, args.test)
        pp = dict(cfg.models.head.postprocess)
        for key, settings in (("own", result.own), ("chosen", result.chosen)):
            r = validate(
                model,
                eval_loader(test, cfg),
                test,
                device,
                postprocess_options={**pp, **settings},
                workers=cfg.trainer.eval_workers,
            )
            out[f"{args.test}_{key}_hmean"] = round(r.hmean, 6)
    if not args.dry_run:
        store(args.checkpoint, result)
    if args.json:
        print(json.dumps(out))
        return 0
    print(result.summary())
    if args.test:
        print(
            f"{args.test} split (not used to choose): H-Mean {out[f'{args.test}_own_hmean']:.4f} with the old settings, "
            f"{out[f'{args.test}_chosen_hmean']:.4f} with the chosen"
        )
    print(f"stored in {args.checkpoint}" if not args.dry_run else "--dry-run: checkpoint unchanged")
    return 0
