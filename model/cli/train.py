"""`receiptflow train [preset=NAME] [dotted.key=value ...]`: the training loop of model/train.py."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a detector: preset= and dotted overrides, as the seed's runners/train.py took them",
        description="Train DBNet. Arguments are Hydra-style: preset=NAME, then key=value overrides, e.g.\n"
        "  receiptflow train preset=run8 dataset.root=data/ models.encoder.pretrained=false trainer.max_epochs=22\n"
        "Prints one metric line per epoch, writes OUTPUT_DIR/{config.yaml,metrics.jsonl,last.pt,best.pt} "
        "(preset=OUTPUT_DIR/config.yaml loads the run's config back); resume=auto continues from last.pt. SIGTERM "
        "saves and exits with status 143. A bad setting is one line, exit 2.\n"
        "init_from=CHECKPOINT (a path or s3:// URI, e.g. a run's best.pt) starts a fresh run (epoch 1, new optimizer "
        "and schedule) from its weights, instead of models.encoder.pretrained/weights: init_part=model (default) takes "
        "them all, init_part=encoder the encoder's alone. Shapes must fit (an error names the keys). A run that resumes "
        "takes last.pt instead; e.g. pretrain on synthetic receipts, then\n"
        "  receiptflow train preset=cpu_tiny dataset.root=data/real init_from=runs/synth/best.pt",
        epilog=_presets_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="preset=NAME and dotted config overrides")
    p.set_defaults(func=run)


def _presets_epilog() -> str:
    from model.config_presets import list_presets  # YAML only; the schema and torch load when training

    return "presets:\n" + "\n".join(f"  {name:<32} {text}" for name, text in list_presets().items())


def run(args) -> int:
    from model.config import load_config
    from model.train import TrainingInterrupted, train

    cfg = load_config(args.overrides)
    try:
        train(cfg)
    except TrainingInterrupted:
        return 143
    return 0
