"""How fast the `receiptflow` CLI answers: `--help` of every command and verb, `score` and
`submit --check` on a small file (4 receipts of the dataset root).

Each command runs as a fresh `python -c "from model.cli import main; ..."` process, as the
console script does. Reported per command:

- `wall_ms`: the least wall time of REPEAT runs, interpreter start included (what a user waits);
- `import_ms`: the imports of one run under `python -X importtime` (the sum of its top-level
  cumulative times: interpreter start-up modules included, `python_ms` alone is the bare start);
- `heavy`: which of the packages a command should only import when it needs them
  (torch, albumentations, kfp, ...) the run imported.

    python -m tests.benchmarks.bench_cli [CODE_DIR]   # CODE_DIR: measure another checkout (PYTHONPATH);
                                                      # BENCH_CLI_REPEAT=N: runs per command (default 5)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEAT = 5
N_IMAGES = 4
HEAVY = ("torch", "albumentations", "kfp", "timm", "cv2", "scipy", "shapely", "minio", "omegaconf", "numpy", "PIL")
HELP = (
    [],
    ["synth"],
    ["convert"],
    ["check"],
    ["split"],
    ["config"],
    ["config", "show"],
    ["train"],
    ["eval"],
    ["predict"],
    ["score"],
    ["submit"],
    ["ensemble"],
    ["data"],
    ["data", "pull"],
    ["pipeline"],
    ["pipeline", "compile"],
    ["pipeline", "submit"],
    ["pipeline", "run"],
    ["sweep"],
    ["sweep", "render"],
    ["sweep", "report"],
    ["sweep", "replay"],
    ["earlystop", "serve"],
    ["export"],
    ["cluster", "check"],
)
# the console script's work, and which heavy packages it left loaded (stderr, last line)
PROGRAM = (
    "import atexit, sys\n"
    f"atexit.register(lambda: print('HEAVY ' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr))\n"
    "from model.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def small_files(root: Path, tmp: Path) -> dict[str, Path]:
    """GT and predictions (the GT itself) of N_IMAGES receipts, their submission CSV and images."""
    from model.data.ufo import read_ufo, write_ufo
    from model.submission import write_submission

    images, _ = read_ufo(Path(root) / "jsons" / "train.json")
    names = sorted(images)[:N_IMAGES]
    small = {n: images[n] for n in names}
    (tmp / "images").mkdir()
    for n in names:
        shutil.copyfile(Path(root) / "images" / "train" / n, tmp / "images" / n)
    write_ufo(small, tmp / "gt.json")
    write_submission(small, tmp / "submission.csv", image_names=names)
    return {"gt": tmp / "gt.json", "csv": tmp / "submission.csv", "images": tmp / "images"}


def measure(argv: list[str], env: dict, repeat: int = REPEAT) -> dict:
    cmd = [sys.executable, "-c", PROGRAM, *argv]
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        # cwd: not a checkout (`-c` puts the working directory first on sys.path, before PYTHONPATH)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
        walls.append(time.perf_counter() - start)
    if out.returncode != 0:
        raise RuntimeError(f"receiptflow {' '.join(argv)}: exit {out.returncode}: {out.stderr[-500:]}")
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROGRAM, *argv],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    return {
        "wall_ms": round(min(walls) * 1e3),
        "import_ms": round(import_us(timed.stderr) / 1e3),
        "heavy": heavy_of(timed.stderr),
    }


def import_us(stderr: str) -> int:
    """Sum of the top-level cumulative times of `-X importtime` output (microseconds)."""
    total = 0
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|", 2)
            if cumulative.strip().isdigit() and name.startswith(" ") and not name.startswith("  "):
                total += int(cumulative)
    return total


def heavy_of(stderr: str) -> list[str]:
    last = [line for line in stderr.splitlines() if line.startswith("HEAVY ")][-1]
    return [m for m in last[len("HEAVY ") :].split(",") if m]


def run(root, code: str | Path | None = None, repeat: int = REPEAT) -> dict:
    """Times of the CLI of this checkout, or of the one at `code` (e.g. a worktree of an older commit)."""
    code = Path(__file__).resolve().parents[2] if code is None else Path(code).resolve()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(code))
    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        files = small_files(Path(root), tmp)
        bare = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
            bare.append(time.perf_counter() - start)
        commands = {
            " ".join(["receiptflow", *argv, "--help"]): measure([*argv, "--help"], env, repeat) for argv in HELP
        }
        commands[f"receiptflow score GT PRED ({N_IMAGES} receipts)"] = measure(
            ["score", str(files["gt"]), str(files["gt"])], env, repeat
        )
        commands[f"receiptflow submit --check CSV --images DIR ({N_IMAGES} receipts)"] = measure(
            ["submit", "--check", str(files["csv"]), "--images", str(files["images"])], env, repeat
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"python_ms": round(min(bare) * 1e3), "repeat": repeat, "commands": commands}


if __name__ == "__main__":
    from tests.benchmarks.common import sroie_root

    data = sroie_root()
    if data is not None:
        try:
            code = sys.argv[1] if len(sys.argv) > 1 else None
            print(json.dumps(run(data, code, int(os.environ.get("BENCH_CLI_REPEAT", REPEAT))), indent=1))
        finally:
            shutil.rmtree(data, ignore_errors=True)
