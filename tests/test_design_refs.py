"""The design is in the repository (docs/design.md), and every "docs/design.md §N" in code and docs names a section
it has: a user's clone has no ../shared/DESIGN.md to follow."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = [
    p
    for pattern in ("*.py", "*.md", "*.toml", "*.yaml", "Makefile")
    for p in REPO.rglob(pattern)
    if not {".venv", ".venv-peers", "build", ".git"} & set(p.relative_to(REPO).parts)
]


def test_every_design_reference_names_a_section_of_docs_design():
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", (REPO / "docs" / "design.md").read_text(), re.M)}
    assert sections == set(range(1, 9))
    refs = [(p, int(n)) for p in SOURCES for n in re.findall(r"docs/design\.md §(\d+)", p.read_text(errors="replace"))]
    assert len(refs) >= 15
    assert not [f"{p.relative_to(REPO)}: §{n}" for p, n in refs if n not in sections]


def test_nothing_points_at_the_teams_design_file_outside_the_repository():
    stale = [
        str(p.relative_to(REPO))
        for p in SOURCES
        if p.name != "test_design_refs.py" and re.search(r"\bDESIGN\.md", p.read_text(errors="replace"))
    ]
    assert not stale


def test_no_module_imports_another_modules_private_names():
    """docs/design.md §2: one home per concern, reached through public names (tests may look inside)."""
    import ast

    repo = Path(__file__).resolve().parents[1]
    found = []
    for top in ("model", "components", "pipelines", "earlystop", "receiptflow"):
        for path in sorted((repo / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found += [
                        f"{path.relative_to(repo)}: from {node.module} import {a.name}"
                        for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")
                    ]
    assert not found, "\n".join(found)
