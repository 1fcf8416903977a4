"""publish: the run's results to ``<output_uri>/runs/<run id>/`` and its Markdown summary."""

from typing import List

from kfp.dsl import Artifact, Input, Markdown, Metrics, Model, Output

from components import component


@component
def publish(
    submission: Input[Artifact],
    fused: Input[Artifact],
    replication: Input[Model],
    models: Input[List[Model]],
    decision: Input[Markdown],
    data_report: Input[Markdown],
    ensemble_metrics: Input[Metrics],
    ensemble_report: Input[Markdown],
    output_uri: str,
    run_id: str,
    job_id: str,
    summary: Output[Markdown],
) -> str:
    """Copy submission.csv, ensemble.json, the models (best.pt, model.onnx: `receiptflow export` of it, for
    onnxruntime, metrics.jsonl, summary.json of the replication and every fold; models/ensemble.json: how the
    chosen ensemble fuses which of them), decision.md and summary.md under the run's prefix (s3:// or a folder);
    returns that prefix. The summary holds the decision, the trainings, the ensemble's
    report (method, candidates, test gain) and every item the dataset's validation skipped."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from components.common import run_prefix
    from model.calibrate import deployment
    from model.onnx_model import export
    from model.report import table
    from model.storage import upload

    prefix = run_prefix(output_uri, run_id, job_id)
    stage = Path(tempfile.mkdtemp(prefix="receiptflow-publish-"))
    try:
        shutil.copy(submission.path, stage / "submission.csv")
        shutil.copy(fused.path, stage / "ensemble.json")
        shutil.copy(decision.path, stage / "decision.md")
        trained = [json.loads((Path(m.path) / "summary.json").read_text()) for m in [replication, *models]]
        for m, info in zip([replication, *models], trained):
            shutil.copytree(m.path, stage / "models" / info["task"])
            export(stage / "models" / info["task"] / "best.pt", stage / "models" / info["task"] / "model.onnx")
        # how to fuse the fold models as this run did (method, members, settings), for serving them (docs/deploy.md)
        plan = deployment(fused.metadata, [info["task"] for info in trained[1:]])
        (stage / "models" / "ensemble.json").write_text(json.dumps(plan, indent=1) + "\n", encoding="utf-8")

        scores = dict(ensemble_metrics.metadata)
        rows = []
        for info in trained:
            b = info["best"]
            test = scores.get(f"test/hmean_fold_{info['fold']}", "")
            rows.append(
                (
                    info["task"],
                    b["epoch"],
                    len(info["history"]),
                    b["val/hmean"],
                    b["val/precision"],
                    b["val/recall"],
                    test,
                )
            )
        lines = [
            Path(decision.path).read_text(encoding="utf-8").strip(),
            "",
            "# Trainings",
            "",
            table(("task", "best epoch", "epochs", "val/hmean", "val/precision", "val/recall", "test/hmean"), rows),
            "",
        ]
        lines += [Path(ensemble_report.path).read_text(encoding="utf-8").strip(), ""]  # method, test gain, candidates
        skipped = [
            line for line in Path(data_report.path).read_text(encoding="utf-8").splitlines() if line.startswith("- ")
        ]
        if skipped:
            lines += [
                "# Data",
                "",
                f"{len(skipped)} item(s) skipped by validation (lenient mode trains on the rest):",
                "",
                *skipped,
                "",
            ]
        else:
            lines += ["# Data", "", "Every image and word passed validation.", ""]
        lines += [
            f"Published to `{prefix}/`: submission.csv, ensemble.json, models/ (best.pt and model.onnx per "
            "training; models/ensemble.json: how to fuse them), decision.md, summary.md.",
            "",
        ]
        text = "\n".join(lines)
        (stage / "summary.md").write_text(text, encoding="utf-8")
        with open(summary.path, "w", encoding="utf-8") as f:
            f.write(text)
        upload(stage, prefix, progress=False)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # also when the upload fails
    print(f"published to {prefix}/", flush=True)
    return prefix
