"""README.md is the short way in: at most 200 lines, its commands run with today's CLI, its layout names every
top-level folder, and every relative link in it and in docs/ leads to a file that exists."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.test_runbook import unparsed

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 200


def test_every_receiptflow_command_of_the_readme_parses():
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("receiptflow "):
                commands.append(shlex.split(line)[1:])
    assert {c[0] for c in commands} >= {"synth", "train", "predict", "score", "export", "pipeline", "cluster"}
    assert not unparsed(commands), "README: these do not parse"


def test_the_layout_names_every_top_level_folder():
    layout = re.search(r"## Layout\n\n```\n(.*?)```", README, re.S)[1]
    named = set(re.findall(r"^([\w-]+)/", layout, re.M))
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    folders = {p.split("/")[0] for p in tracked if "/" in p and not p.startswith(".")}
    assert named == folders


@pytest.mark.parametrize("doc", ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))])
def test_every_relative_link_leads_to_a_file(doc):
    path = REPO / doc
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8"))
    missing = [link for link in links if "://" not in link and not (path.parent / link).exists()]
    assert not missing, f"{doc}: {missing}"
