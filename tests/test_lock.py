"""The locks (requirements/*.lock, tests/benchmarks/quality/peers.lock, written by `make lock`) agree
with what they lock: pyproject.toml's dependencies, the images' install and this venv.

A dependency added to pyproject.toml but not re-locked, or a lock edited by hand, fails here; so does
a venv that drifted from the lock (`make setup` makes it anew whenever the lock changes)."""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DEV_LOCK = ROOT / "requirements" / "dev.lock"
IMAGE_LOCK = ROOT / "requirements" / "image.lock"
NO_TORCH_LOCK = ROOT / "requirements" / "dev-without-torch.lock"
PEERS = ROOT / "tests" / "benchmarks" / "quality"
# what the images take from PyTorch's index instead of the lock (scripts/lock.sh)
CUDA_STACK = re.compile(r"torch|torchvision|triton|nvidia-.+|cuda-.+")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str | None
    hashes: frozenset[str]
    via: tuple[str, ...]

    def applies(self) -> bool:
        """Whether this machine's Python installs it (a universal lock holds every platform's pins)."""
        return self.marker is None or Requirement(f"x; {self.marker}").marker.evaluate()


def read_lock(path: Path) -> list[Pin]:
    """The pins of a `uv pip compile --generate-hashes` file: `name==version [; marker] \\`, its
    `--hash=` lines, then its `# via` annotation (one line, or one parent per `#   ` line)."""
    pins, cur = [], None
    for line in path.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?: ; (.+?))? \\$", line):
            cur = {
                "name": canonicalize_name(m.group(1)),
                "version": m.group(2),
                "marker": m.group(3),
                "hashes": set(),
                "via": [],
            }
            pins.append(cur)
        elif cur and (h := re.match(r"^\s+--hash=(sha256:[0-9a-f]{64})", line)):
            cur["hashes"].add(h.group(1))
        elif cur and (v := re.match(r"^\s+#\s+(?:via\s+)?(.+)$", line)) and v.group(1) != "via":
            cur["via"].append(v.group(1).strip())
    assert pins, f"{path}: no pins"
    out = [Pin(p["name"], p["version"], p["marker"], frozenset(p["hashes"]), tuple(p["via"])) for p in pins]
    for p in out:
        assert p.hashes, f"{path.name}: {p.name}=={p.version} has no --hash"
    return out


def here(pins: list[Pin]) -> dict[str, Pin]:
    """The pins this machine installs, by name (at most one each)."""
    out = {}
    for p in pins:
        if p.applies():
            assert p.name not in out, f"two pins of {p.name} apply here"
            out[p.name] = p
    return out


def direct_requirements() -> list[Requirement]:
    """pyproject.toml's dependencies and the extras `make setup` installs (test, dev)."""
    deps = PROJECT["dependencies"] + [d for extra in ("test", "dev") for d in PROJECT["optional-dependencies"][extra]]
    return [Requirement(d) for d in deps]


def test_every_dependency_of_pyproject_is_locked_at_a_version_it_allows_and_nothing_else_is_direct():
    pins = read_lock(DEV_LOCK)
    locked_direct = {p.name for p in pins if "receiptflow (pyproject.toml)" in p.via}
    declared = {canonicalize_name(r.name) for r in direct_requirements()}
    assert declared - locked_direct == set(), f"in pyproject.toml, not in {DEV_LOCK.name}: run `make lock`"
    assert locked_direct - declared == set(), "locked as pyproject's, no longer in it: run `make lock`"
    for req in direct_requirements():
        for p in pins:
            if p.name == canonicalize_name(req.name):
                assert req.specifier.contains(p.version, prereleases=True), (
                    f"{DEV_LOCK.name} pins {p.name}=={p.version}, pyproject.toml asks {req}: run `make lock`"
                )


def test_the_image_lock_is_the_runtime_part_of_the_dev_lock_without_the_torch_stack():
    """images/Dockerfile* install image.lock after torch: its every pin must be dev.lock's (the bytes
    the tests ran), and it must hold every runtime dependency, walked from this venv's metadata."""
    dev = {(p.name, p.version, p.marker): p for p in read_lock(DEV_LOCK)}
    image = read_lock(IMAGE_LOCK)
    for p in image:
        twin = dev.get((p.name, p.version, p.marker))
        assert twin and twin.hashes == p.hashes, f"{IMAGE_LOCK.name}: {p.name}=={p.version} is not {DEV_LOCK.name}'s"
        assert not CUDA_STACK.fullmatch(p.name), (
            f"{IMAGE_LOCK.name} holds {p.name}, which the images take from PyTorch's index"
        )
    runtime = runtime_closure()
    expected = {n for n in runtime if not CUDA_STACK.fullmatch(n)}
    assert set(here(image)) == expected, (
        f"missing: {sorted(expected - set(here(image)))}, not needed: {sorted(set(here(image)) - expected)}"
    )
    test_only = {canonicalize_name(Requirement(d).name) for d in PROJECT["optional-dependencies"]["test"]}
    assert not test_only & set(here(image))


def test_the_lock_without_torch_is_the_dev_lock_less_exactly_the_torch_stack():
    """For a venv whose torch comes from PyTorch's CPU-only index (docs/development.md)."""
    key = lambda p: (p.name, p.version, p.marker, p.hashes)  # noqa: E731
    dev = {key(p) for p in read_lock(DEV_LOCK) if not CUDA_STACK.fullmatch(p.name)}
    assert {key(p) for p in read_lock(NO_TORCH_LOCK)} == dev


def runtime_closure() -> set[str]:
    """Every distribution `pip install receiptflow` (no extras) installs here, from installed metadata."""
    env = default_environment()
    seen: set[str] = set()
    todo = [(r, "") for r in metadata.requires("receiptflow") or []]
    while todo:
        text, extra = todo.pop()
        req = Requirement(text)
        if req.marker and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        for wanted in [""] + sorted(req.extras):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            todo += [(r, wanted) for r in metadata.requires(name) or []]
    return {n for n, _ in seen}


def test_this_venv_holds_exactly_the_dev_lock():
    """`pip freeze` equals the lock: every locked package at its version, and nothing else."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip(f"not the project's venv ({sys.prefix}): `make setup` makes .venv from the lock")
    locked = {n: p.version for n, p in here(read_lock(DEV_LOCK)).items()}
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("receiptflow")
    installed.pop("pip")  # the interpreter's own, as `python -m venv` put it (pip freeze hides it too)
    wrong = {n: (installed.get(n), v) for n, v in locked.items() if installed.get(n) != v}
    assert not wrong, f"installed vs locked: {wrong}; run `rm -rf .venv && make setup`"
    extra = sorted(set(installed) - set(locked))
    assert not extra, f"installed but not in {DEV_LOCK.name}: {extra}; run `rm -rf .venv && make setup`"


def test_the_peers_venv_locks_the_peers_at_their_pins_and_torch_at_pyprojects():
    wanted = [
        Requirement(line.split("#")[0])
        for line in (PEERS / "peers-requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    locked = here(read_lock(PEERS / "peers.lock"))
    ours = {canonicalize_name(r.name): r for r in map(Requirement, PROJECT["dependencies"])}
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in locked, f"peers.lock lacks {req}: run `make lock`"
        assert req.specifier.contains(locked[name].version), (
            f"peers.lock pins {name}=={locked[name].version}, not {req}"
        )
        if name in ("torch", "torchvision"):
            assert req.specifier == ours[name].specifier, f"the peers' {req} is not pyproject's {ours[name]}"
