"""The container images (images/) and the image reference, checked by parsing the files: there is
no Docker engine here. Each test fails when the Dockerfiles, .dockerignore or the references drift."""

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

import components

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {"gpu": ROOT / "images" / "Dockerfile", "cpu": ROOT / "images" / "Dockerfile.cpu"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
REPO = "ghcr.io/receiptflow/"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


TEST_ONLY = {norm(re.split(r"[=<>\[ ,]", d)[0]) for d in PROJECT["optional-dependencies"]["test"]}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def env_of(path: Path) -> dict[str, str]:
    env = {}
    for word, rest in instructions(path):
        if word == "ENV":
            for tok in shlex.split(rest):
                key, _, value = tok.partition("=")
                env[key] = value
    return env


def expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), text)


def pip_installs(path: Path) -> list[list[str]]:
    """The arguments of every `pip install` in the RUN steps."""
    out = []
    for word, rest in instructions(path):
        if word != "RUN":
            continue
        lex = shlex.shlex(rest, posix=True, punctuation_chars=";&|>")
        lex.whitespace_split = True
        cmd = []
        for tok in list(lex) + [";"]:
            if tok in {";", "&&", "||", "|", ">"}:
                if cmd[:2] == ["pip", "install"]:
                    out.append(cmd[2:])
                cmd = []
            else:
                cmd.append(tok)
    return out


def pins(path: Path) -> dict[str, str]:
    found = {}
    for args in pip_installs(path):
        for tok in args:
            if not tok.startswith("-") and "==" in tok:
                name, version = tok.split("==", 1)
                assert norm(name) not in found, f"{path.name}: {name} installed twice"
                found[norm(name)] = version
    return found


def pyproject_pins() -> dict[str, str]:
    out = {}
    for dep in PROJECT["dependencies"]:
        if "==" in dep:
            name, version = (s.strip() for s in dep.split("==", 1))
            out[norm(name)] = version
    return out


def test_pyproject_has_the_pins_these_tests_rely_on():
    p = pyproject_pins()
    assert {"torch", "torchvision", "albumentations", "kfp"} <= set(p)


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_dockerfile_installs_torch_by_pin_and_the_rest_from_the_image_lock_and_nothing_for_tests(kind):
    path = DOCKERFILES[kind]
    # torch and torchvision, pyproject's pins, from PyTorch's own index: CUDA wheels for the GPU image
    assert pins(path) == {n: v for n, v in pyproject_pins().items() if n in ("torch", "torchvision")}, path.name
    torch_install = [a for a in pip_installs(path) if any(t.startswith("torch==") for t in a)]
    assert len(torch_install) == 1
    index = dict(ARG.split("=", 1) for w, ARG in instructions(path) if w == "ARG" and "=" in ARG)
    url = expand(" ".join(torch_install[0]), index)
    flavour = re.search(r"download\.pytorch\.org/whl/(\w+)", url)
    assert flavour, f"{path.name}: torch not from download.pytorch.org: {url}"
    assert (flavour.group(1) == "cpu") == (kind == "cpu"), flavour.group(1)
    assert kind == "cpu" or re.fullmatch(r"cu\d{3}", flavour.group(1))
    # every other package from requirements/image.lock, hash-checked, resolving nothing
    (lock_install,) = [a for a in pip_installs(path) if "-r" in a]
    assert lock_install[lock_install.index("-r") + 1] == "/tmp/receiptflow-src/requirements/image.lock"
    assert {"--require-hashes", "--no-deps"} <= set(lock_install), lock_install
    # the package itself, non-editable, without dependencies (the lock brought them) and built with
    # the lock's setuptools; then pip's own check that torch and the locked packages fit together
    (args,) = [a for a in pip_installs(path) if "/tmp/receiptflow-src" in a]
    assert "-e" not in args and {"--no-deps", "--no-build-isolation"} <= set(args), args
    run = " ".join(rest for w, rest in instructions(path) if w == "RUN")
    assert "pip check" in run
    # nothing from the test extra, and the extra itself is not requested
    every = [t for a in pip_installs(path) for t in a]
    for tok in every:
        assert norm(re.split(r"[=<>\[ ]", tok)[0]) not in TEST_ONLY, f"{path.name} installs {tok}"
        assert "[test]" not in tok
    # the COPYs bring what the build needs
    copied = " ".join(rest for w, rest in instructions(path) if w == "COPY")
    for need in ("requirements/image.lock", "pyproject.toml", PROJECT["readme"], "model/", "components/", "pipelines/"):
        assert need in copied, f"{path.name} does not COPY {need}"


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_base_image_is_pinned_python_matching_requires_python(kind):
    froms = [rest for w, rest in instructions(DOCKERFILES[kind]) if w == "FROM"]
    assert len(froms) == 1
    image = froms[0].split()[0]
    m = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-(\w+)(@sha256:[0-9a-f]{64})?", image)
    assert m, f"base not a pinned python:X.Y.Z-slim-<debian> tag: {image}"
    # requires-python = ">=3.11,<3.12": the base's minor version must be 3.11
    assert f"{m.group(1)}.{m.group(2)}" == "3.11" and ">=3.11" in PROJECT["requires-python"]
    assert m.group(4) in {"bookworm", "trixie"}


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_runs_as_numeric_non_root_user_after_every_root_step(kind):
    ins = instructions(DOCKERFILES[kind])
    users = [i for i, (w, _) in enumerate(ins) if w == "USER"]
    assert users, "no USER"
    last = users[-1]
    uid, _, gid = ins[last][1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, ins[last][1]
    assert not [w for w, _ in ins[last:] if w in {"RUN", "COPY", "ADD"}], "steps after the last USER"
    runs = " ".join(rest for w, rest in ins if w == "RUN")
    assert re.search(rf"useradd\b.*--uid {uid}\b.*--gid {gid}\b", runs)
    assert re.search(rf"groupadd\b.*--gid {gid}\b", runs)
    assert ins[-1][0] == "CMD" and not [w for w, _ in ins if w == "ENTRYPOINT"]
    assert [w for w, _ in ins[last:]].count("WORKDIR") == 1


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_caches_are_under_home_and_owned_by_the_user(kind):
    path = DOCKERFILES[kind]
    env = env_of(path)
    home = env["HOME"]
    assert home.startswith("/home/")
    for var in ("XDG_CACHE_HOME", "TORCH_HOME", "HF_HOME", "MPLCONFIGDIR", "NUMBA_CACHE_DIR"):
        assert env.get(var, "").startswith(home + "/"), f"{var}={env.get(var)}"
    assert env.get("NO_ALBUMENTATIONS_UPDATE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1" and env.get("PYTHONDONTWRITEBYTECODE") == "1"
    ins = instructions(path)
    user = next(rest for w, rest in reversed(ins) if w == "USER")
    runs = [expand(rest, env) for w, rest in ins if w == "RUN"]
    mkdirs = " ".join(r for r in runs if "mkdir" in r)
    for var in ("XDG_CACHE_HOME", "TORCH_HOME", "HF_HOME", "MPLCONFIGDIR", "NUMBA_CACHE_DIR"):
        assert env[var] in mkdirs, f"{var} is not created"
    # home (and so every cache) chowned to the runtime user in the last RUN that touches it
    chowns = [i for i, r in enumerate(runs) if re.search(rf"chown -R {re.escape(user)} {re.escape(home)}\b", r)]
    assert chowns, "caches not chowned to the user"
    assert chowns[-1] == len(runs) - 1 or not any(home in r for r in runs[chowns[-1] + 1 :])
    workdir = [rest for w, rest in ins if w == "WORKDIR"]
    assert workdir[-1] == home


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_labels_carry_the_package_version(kind):
    labels = " ".join(rest for w, rest in instructions(DOCKERFILES[kind]) if w == "LABEL")
    found = dict(tok.split("=", 1) for tok in shlex.split(labels))
    assert found["org.opencontainers.image.version"] == PROJECT["version"]
    assert found["org.opencontainers.image.source"].startswith("https://")


# --- .dockerignore ---------------------------------------------------------------------------


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""

    def regex(p):
        out, i = "", 0
        while i < len(p):
            if p.startswith("**", i):
                out += ".*"
                i += 2
                if p.startswith("/", i):
                    out, i = out[:-2] + "(?:.*/)?", i + 1
            elif p[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif p[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(p[i]), i + 1
        return re.compile(out + r"\Z")

    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pat in patterns:
        neg = pat.startswith("!")
        rx = regex(pat.lstrip("!").strip("/"))
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def test_ignored_matcher_follows_dockers_rules():
    pats = ["*", "!model/", "**/__pycache__"]
    assert ignored(".venv/bin/python", pats) and ignored("tests/x.py", pats)
    assert not ignored("model/net/x.py", pats) and ignored("model/__pycache__/x.pyc", pats)


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest():
    pats = dockerignore()
    needed = ["pyproject.toml", PROJECT["readme"], "requirements/image.lock"]
    for package in ("model", "components", "pipelines"):
        needed += [
            str(p.relative_to(ROOT))
            for p in (ROOT / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    for pkg, globs in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        for g in globs:
            files = list((ROOT / pkg).glob(g))
            assert files, f"package-data {pkg}/{g} matches nothing"
            needed += [str(f.relative_to(ROOT)) for f in files]
    assert "model/__init__.py" in needed and any(n.startswith("pipelines/compiled/") for n in needed)
    kept_out = [n for n in needed if ignored(n, pats)]
    assert not kept_out, f".dockerignore drops build inputs: {kept_out[:5]}"
    for junk in (
        ".venv/bin/python",
        ".git/HEAD",
        "build/demo-data/x.jpg",
        "tests/test_images.py",
        "model/__pycache__/cli.cpython-311.pyc",
        "model/config.pyc",
        "receiptflow.egg-info/PKG-INFO",
        ".pytest_cache/v/x",
        ".gpucheck/x",
        "docs/x.png",
        "manifests/katib/x.yaml",
        ".env",
    ):
        assert ignored(junk, pats), f".dockerignore sends {junk}"


# --- one image reference ---------------------------------------------------------------------


def image_refs(path: Path) -> list[str]:
    return [
        m.group(1).strip("'\"")
        for m in re.finditer(r"^\s*-?\s*image:\s*(\S+)", path.read_text(), re.M)
        if m.group(1).strip("'\"").startswith(REPO)
    ]


def test_default_image_is_tagged_with_the_package_version():
    name, _, tag = components.DEFAULT_IMAGE.rpartition(":")
    assert name == REPO + "receiptflow" and tag == PROJECT["version"]
    gpu = (ROOT / "images" / "Dockerfile").read_text()
    assert f"-t {components.DEFAULT_IMAGE} " in gpu


def test_images_readme_builds_and_pushes_the_default_image():
    text = (ROOT / "images" / "README.md").read_text()
    assert f"docker build -f images/Dockerfile -t {components.DEFAULT_IMAGE} ." in text
    assert f"docker push {components.DEFAULT_IMAGE}\n" in text
    assert f"docker build -f images/Dockerfile.cpu -t {components.DEFAULT_IMAGE}-cpu ." in text


def test_every_yaml_names_the_default_image():
    files = sorted((ROOT / "pipelines" / "compiled").glob("*.yaml")) + sorted((ROOT / "manifests").rglob("*.yaml"))
    seen = {}
    for f in files:
        for ref in image_refs(f):
            seen.setdefault(ref, []).append(str(f.relative_to(ROOT)))
    assert seen, "no receiptflow image in the compiled pipelines or manifests"
    assert any(p.startswith("pipelines/compiled/") for ps in seen.values() for p in ps)
    assert any(p.startswith("manifests/katib/") for ps in seen.values() for p in ps)
    # kustomize bases may name the image untagged and set the tag in kustomization.yaml `images:`
    name, _, tag = components.DEFAULT_IMAGE.rpartition(":")
    retags = []
    for k in (ROOT / "manifests").rglob("kustomization.yaml"):
        for entry in (yaml.safe_load(k.read_text()) or {}).get("images") or []:
            if entry["name"].startswith(REPO) or str(entry.get("newName", "")).startswith(REPO):
                retags.append((str(k.relative_to(ROOT)), entry))
    for where, entry in retags:
        assert entry["name"] == name and entry.get("newName", name) == name, (where, entry)
        assert str(entry.get("newTag")) == tag and "digest" not in entry, (where, entry)
    untagged = seen.pop(name, None)
    if untagged:
        assert retags and all(p.startswith("manifests/") for p in untagged), untagged
    # the early-stopping image (images/Dockerfile.earlystop) is named only where katib-config registers it
    from pipelines.sweep import EARLYSTOP_IMAGE

    assert all(p.startswith("manifests/overlays/standalone/katib-config/") for p in seen.pop(EARLYSTOP_IMAGE, []))
    wrong = {ref: ps for ref, ps in seen.items() if ref != components.DEFAULT_IMAGE}
    assert not wrong, f"not {components.DEFAULT_IMAGE}: {wrong}"


@pytest.mark.slow
def test_the_wheel_the_images_install_carries_presets_params_compiled_pipelines_and_commands(tmp_path):
    """The images `pip install .` (not editable): data files must be package data, the pipeline
    and sweep commands entry points, or `--params-file demo` and `receiptflow sweep` break in pods."""
    import os
    import shutil
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    # a clean copy of the sources, like the image's build context: a stale *.egg-info/SOURCES.txt
    # in the checkout would otherwise add the data files whatever pyproject says
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.split()
    src = tmp_path / "src"
    for rel in listed:
        if (repo / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, src / rel)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(src),
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("receiptflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"model/presets/{p.name}" for p in (repo / "model" / "presets").glob("*.yaml")}
    expected |= {f"pipelines/params/{p.name}" for p in (repo / "pipelines" / "params").glob("*.yaml")}
    expected |= {f"pipelines/compiled/{p.name}" for p in (repo / "pipelines" / "compiled").glob("*.yaml")}
    assert len(expected) >= 7 and expected <= names
    entry_points = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "pipeline = pipelines.cli" in entry_points and "sweep = pipelines.sweep_cli" in entry_points

    # Installed next to other code (docs/design.md §2, "Import names"): the wheel in a fresh venv (its
    # dependencies from this environment), run from a directory holding a stray model.py, pipelines/ and
    # components/ -- they must not shadow ours -- and with that directory on PYTHONPATH, where they would:
    # one line per shadowed name, exit 2.
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # a plain path: its .pth files stay unread
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    stray = tmp_path / "stray"
    for rel in ("model.py", "pipelines/__init__.py", "components/__init__.py"):
        (stray / rel).parent.mkdir(parents=True, exist_ok=True)
        (stray / rel).write_text("raise ImportError('the stray one was imported')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cli = str(venv / "bin" / "receiptflow")

    def run(*args, **extra):
        return subprocess.run(
            [cli, *args], cwd=stray, env={**env, **extra}, capture_output=True, text=True, timeout=300
        )

    assert run("--help").returncode == 0
    shown = run("config", "show", "preset=cpu_tiny")
    assert shown.returncode == 0 and "test_efficientnet" in shown.stdout, shown.stderr
    replay = run(
        "sweep", "replay", str(repo / "tests" / "fixtures" / "curves" / "seed_sweep.json")
    )  # a pipelines/ command
    assert replay.returncode == 0 and "| medianstop-floor |" in replay.stdout, replay.stderr
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import model, pipelines; print(model.__file__, pipelines.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert str(site) in where and str(repo) not in where  # the wheel's copy, not this checkout's
    shadowed = run("config", "show", PYTHONPATH=str(stray))
    assert shadowed.returncode == 2 and shadowed.stdout == ""
    lines = shadowed.stderr.strip().splitlines()
    assert [line.split("'")[1] for line in lines] == ["model", "components", "pipelines"]
    assert all(
        line.startswith("receiptflow: error: ") and str(stray) in line and "shadows it" in line for line in lines
    )
