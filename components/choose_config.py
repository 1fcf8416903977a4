"""choose_config: the seed's rule (docs/design.md §1) — keep Run 8 when its replication scores well
enough, else fall back to Run 3 — with the decision written as Markdown."""

from typing import List

from kfp.dsl import Markdown, Output

from components import component


@component
def choose_config(
    hmean: float,
    success_hmean: float,
    acceptable_hmean: float,
    run8_lr: float,
    run8_weight_decay: float,
    run8_t_max: int,
    run8_eta_min: float,
    run3_lr: float,
    run3_weight_decay: float,
    run3_t_max: int,
    run3_eta_min: float,
    folds: int,
    decision: Output[Markdown],
) -> List[dict]:
    """Apply the rule to the replication's val/hmean. Returns the plan: one item per fold
    training (fold index, chosen config and its hyperparameters), what ParallelFor iterates over."""
    from components.common import FALLBACK, decide
    from model.report import table

    outcome = decide(hmean, success_hmean, acceptable_hmean)
    run8 = (run8_lr, run8_weight_decay, run8_t_max, run8_eta_min)
    run3 = (run3_lr, run3_weight_decay, run3_t_max, run3_eta_min)
    config, chosen = ("run3", run3) if outcome == FALLBACK else ("run8", run8)
    why = {
        "success": f"≥ {success_hmean}: Run 8 replicated",
        "acceptable": f"in [{acceptable_hmean}, {success_hmean}): acceptable, Run 8 kept",
        "fallback": f"< {acceptable_hmean}: fall back to Run 3",
    }[outcome]
    text = "\n".join(
        [
            "# Configuration decision",
            "",
            f"Replication (Run 8) val/hmean = **{hmean:.4f}** ({hmean!r}) — {why}.",
            "",
            f"Folds train with **{'Run 3' if config == 'run3' else 'Run 8'}**:",
            "",
            table(
                ("config", "lr", "weight_decay", "T_max", "eta_min"),
                [
                    (
                        name + (" (chosen)" if name.lower().replace(" ", "") == config else ""),
                        *(repr(v) for v in values),
                    )
                    for name, values in (("Run 8", run8), ("Run 3", run3))
                ],
            ),
            "",
        ]
    )
    with open(decision.path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"decision: replication val/hmean={hmean:.4f} -> {outcome}; folds use {config}", flush=True)
    decision.metadata.update({"outcome": outcome, "config": config, "replication_hmean": hmean})
    lr, weight_decay, t_max, eta_min = chosen
    return [
        {"fold": i, "config": config, "lr": lr, "weight_decay": weight_decay, "t_max": t_max, "eta_min": eta_min}
        for i in range(folds)
    ]
