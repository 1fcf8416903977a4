"""`receiptflow config show [preset=NAME] [key=value ...] [--resolve]` and `receiptflow config presets`."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "config",
        help="show the resolved training config or list the presets",
        description="Configs are a preset (model/presets/NAME.yaml) plus Hydra-style dotted overrides, "
        "as `receiptflow train` takes them: preset=run8 models.optimizer.lr=0.0005 trainer.max_epochs=22.",
    )
    cmds = p.add_subparsers(dest="config_command", required=True, metavar="{show,presets}")
    show = cmds.add_parser(
        "show",
        help="print the config for a preset and overrides as YAML",
        description="Print the config that `receiptflow train` would use with the same arguments.",
    )
    show.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="preset=NAME (default efficientnet_b4_lr_optimized) and dotted overrides, values parsed as YAML",
    )
    show.add_argument(
        "--resolve", action="store_true", help="resolve interpolations such as output_dir: runs/${exp_name}"
    )
    show.set_defaults(func=run_show)
    presets = cmds.add_parser("presets", help="list the presets with a one-line description")
    presets.set_defaults(func=run_presets)


def run_show(args) -> int:
    from model.config import load_config, to_yaml

    print(to_yaml(load_config(args.overrides), resolve=args.resolve), end="")
    return 0


def run_presets(args) -> int:
    from model.config import DEFAULT_PRESET, list_presets

    presets = list_presets()
    width = max(map(len, presets), default=0)
    for name, description in presets.items():
        mark = " (default)" if name == DEFAULT_PRESET else ""
        print(f"{name:<{width}}  {description}{mark}")
    return 0
