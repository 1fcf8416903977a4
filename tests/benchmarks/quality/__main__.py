"""`make bench-quality`: how good is the detector, next to what one can download?

5-fold cross-validation on the 120 shared SROIE receipts: per fold, receiptflow's CPU recipe is
trained from scratch on the fold's 96 receipts (`receiptflow train ... dataset.folds=...`) and its
last checkpoint (no selection on the held-out fold) detects the fold's 24; the peers detect the
same images with their packages' defaults (tests/benchmarks/quality/peers.py, in `.venv-peers`).
Everything is scored by `receiptflow score` (CLEval, detection only): H/P/R per fold, mean ± sd
over folds, and the detection time per image on this machine.

Resumable: each fold's result is kept under WORK/results/<tag>/ and a fold whose training was
cut short resumes from its last.pt. `--budget-min` stops before a fold that would not fit.

    python -m tests.benchmarks.quality [--preset cpu_receipts] [--folds 0,1] [--budget-min 120]
        [--init-from CKPT] [--train-size N] [--extra-train ROOT] [--peers rapidocr,easyocr] [--retime] [--label NAME]
        [--record] [--write-docs] [key=value ...]

The tables in README.md and docs/quality.md are written from docs/bench-quality.json by
`--write-docs` (or `python -m tests.benchmarks.quality.record`), never by hand; `--record` puts this
run's rows there (tests/benchmarks/quality/record.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
SROIE = REPO_ROOT.parent / "shared" / "data" / "sroie"
PEERS = {"rapidocr": "RapidOCR (PP-OCRv4 det, ONNX)", "easyocr": "EasyOCR (CRAFT)"}
K, SEED = 5, 42


def sh(*cmd: str, capture: bool = False) -> str:
    """Run a receiptflow (or peers') command; its failure stops the benchmark with its own words."""
    res = subprocess.run(cmd, cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE if capture else None)
    if res.returncode:
        raise SystemExit(f"bench-quality: `{' '.join(cmd)}` failed (exit {res.returncode})")
    return res.stdout if capture else ""


def receiptflow(*args: str, capture: bool = False) -> str:
    return sh(sys.executable, "-m", "model.cli", *args, capture=capture)


def prepare_data(work: Path) -> Path:
    """SROIE → WORK/data (all 120 in train+val), then K folds → WORK/folds; kept between runs."""
    folds = work / "folds"
    if (folds / "folds.json").is_file():
        manifest = json.loads((folds / "folds.json").read_text())
        if (manifest["k"], manifest["seed"], manifest["images"]) == (K, SEED, 120):
            return folds
    if not (SROIE / "img").is_dir():
        raise SystemExit(f"bench-quality: needs the shared SROIE sample at {SROIE}")
    receiptflow("convert", "sroie", str(SROIE), str(work / "data"), "--split", "0.8,0.2,0", "--overwrite")
    receiptflow("split", str(work / "data"), "--out", str(folds), "--k", str(K), "--seed", str(SEED))
    return folds


def fold_images(folds: Path, i: int) -> tuple[Path, Path, list[str]]:
    """(fold i's held-out annotations, a folder with links to its images, their names)."""
    manifest = json.loads((folds / "folds.json").read_text())
    gt = folds / f"fold_{i}" / "val.json"
    names = sorted(json.loads(gt.read_text())["images"])
    folder = folds / f"fold_{i}" / "images"
    folder.mkdir(exist_ok=True)
    for name in names:
        link = folder / name
        if not link.exists():
            link.symlink_to(Path(manifest["root"]) / "images" / manifest["sources"][name] / name)
    return gt, folder, names


def score(gt: Path, pred: Path) -> dict:
    out = json.loads(receiptflow("score", str(gt), str(pred), "--json", capture=True))
    return {k: out[k] for k in ("hmean", "precision", "recall")}


def subset(pred: dict, names: list[str], out: Path) -> Path:
    out.write_text(json.dumps({"images": {n: pred["images"][n] for n in names}}))
    return out


def run_peer(peer: str, python: Path, folds: Path, work: Path) -> dict:
    """All 120 images through `peer` once (kept in WORK/peers/), then scored fold by fold."""
    out = work / "peers" / f"{peer}.json"
    manifest = json.loads((folds / "folds.json").read_text())
    if not out.is_file():
        if not python.is_file():
            raise SystemExit(f"bench-quality: {python} is missing; `make bench-quality` builds the peers' venv")
        out.parent.mkdir(parents=True, exist_ok=True)
        images = work / "peers" / "images"
        images.mkdir(exist_ok=True)
        for name, source in manifest["sources"].items():
            if not (images / name).exists():
                (images / name).symlink_to(Path(manifest["root"]) / "images" / source / name)
        names = work / "peers" / "names.txt"
        names.write_text("\n".join(sorted(manifest["sources"])))
        print(f"== {PEERS[peer]}: detecting {len(manifest['sources'])} images", flush=True)
        sh(str(python), str(Path(__file__).with_name("peers.py")), peer, str(images), str(names), str(out))
    pred = json.loads(out.read_text())
    folds_out = []
    for i in range(K):
        gt, _, names = fold_images(folds, i)
        s = score(gt, subset(pred, names, work / "peers" / f"{peer}.fold_{i}.json"))
        folds_out.append({"fold": i, **s, "ms_per_image": 1e3 * statistics.mean(pred["seconds"][n] for n in names)})
    return {"name": PEERS[peer], "version": pred["version"], "folds": folds_out}


def train_subset(folds: Path, n: int | None, work: Path) -> Path:
    """The folds with each training part cut to `n` receipts (seeded), for learning-curve runs."""
    if n is None:
        return folds
    trains = [json.loads((folds / f"fold_{i}" / "train.json").read_text()) for i in range(K)]
    fewest = min(len(t["images"]) for t in trains)
    if not 0 < n <= fewest:
        raise SystemExit(f"bench-quality: --train-size {n}: the folds train on {fewest}+ receipts; give 1..{fewest}")
    out = work / f"folds-n{n}"
    out.mkdir(exist_ok=True)
    (out / "folds.json").write_text((folds / "folds.json").read_text())
    for i, train in enumerate(trains):
        (out / f"fold_{i}").mkdir(exist_ok=True)
        keep = sorted(random.Random(SEED + i).sample(sorted(train["images"]), n))
        (out / f"fold_{i}" / "train.json").write_text(json.dumps({"images": {k: train["images"][k] for k in keep}}))
        (out / f"fold_{i}" / "val.json").write_text((folds / f"fold_{i}" / "val.json").read_text())
    return out


def train_plus(folds: Path, extra: Path | None, work: Path) -> Path:
    """The folds with every labelled receipt (train and val) of the dataset root `extra` added to each
    fold's training part, for "what do more labels buy" runs; the held-out receipts stay the same.
    Written as a dataset root of its own (WORK/plus-<name>/data: links to the images, the labels
    merged) and its folds (WORK/plus-<name>/folds)."""
    if extra is None:
        return folds
    from model.data.ufo import DatasetRoot

    manifest = json.loads((folds / "folds.json").read_text())
    ours, theirs = DatasetRoot(manifest["root"]), DatasetRoot(extra)
    labels, images = {}, {}
    for root in (ours, theirs):
        for split in [s for s in ("train", "val") if s in root.splits()]:
            found = json.loads((root.root / "jsons" / f"{split}.json").read_text())["images"]
            clash = (set(found) & set(labels)) if root is theirs else set()
            if clash:
                raise SystemExit(
                    f"bench-quality: --extra-train {extra}: {len(clash)} receipt(s) of the same name as the "
                    f"benchmark's, e.g. {sorted(clash)[0]}; it must add other receipts"
                )
            labels |= found
            images |= {name: root.root / "images" / split / name for name in found}
    base = work / f"plus-{Path(extra).name}"
    data, out = base / "data", base / "folds"
    (data / "images" / "train").mkdir(parents=True, exist_ok=True)
    (data / "jsons").mkdir(exist_ok=True)
    for name, path in images.items():
        link = data / "images" / "train" / name
        if not link.is_symlink():
            link.symlink_to(path.resolve())
    (data / "jsons" / "train.json").write_text(json.dumps({"images": labels}))
    added = sorted(set(labels) - set(manifest["sources"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "folds.json").write_text(
        json.dumps({**manifest, "root": str(data.resolve()), "sources": {n: "train" for n in sorted(labels)}}, indent=1)
    )
    for i in range(K):
        (out / f"fold_{i}").mkdir(exist_ok=True)
        train = json.loads((folds / f"fold_{i}" / "train.json").read_text())["images"]
        (out / f"fold_{i}" / "train.json").write_text(
            json.dumps({"images": {**train, **{n: labels[n] for n in added}}})
        )
        (out / f"fold_{i}" / "val.json").write_text((folds / f"fold_{i}" / "val.json").read_text())
    print(f"--extra-train: {len(added)} receipts of {extra} join every fold's training part", flush=True)
    return out


def recipe_postprocess(preset: str, overrides: list[str]) -> list[str]:
    """The recipe's post-processing as it is now (preset, then overrides): applied at prediction, so
    thresholds tuned after the folds were trained take effect without training them again."""
    from omegaconf import OmegaConf

    from model.config_presets import load_preset

    pp = OmegaConf.to_container(load_preset(preset)).get("models", {}).get("head", {}).get("postprocess", {})
    return [f"models.head.postprocess.{k}={v}" for k, v in pp.items()] + [
        o for o in overrides if o.startswith("models.head.postprocess.")
    ]


def train_once(run_dir: Path, spent_file: Path, *train_args: str) -> float:
    """`receiptflow train ... output_dir=run_dir` unless run_dir is marked trained; the training
    seconds, kept in `spent_file` across interruptions (a cut run resumes from last.pt and its time
    so far counts)."""
    if not (run_dir / "trained").is_file():
        spent = float(spent_file.read_text()) if spent_file.is_file() else 0.0
        start = time.perf_counter()
        try:
            receiptflow("train", *train_args, f"output_dir={run_dir}", "trainer.eval_workers=0")
        finally:
            spent_file.parent.mkdir(parents=True, exist_ok=True)
            spent_file.write_text(f"{spent + time.perf_counter() - start:.1f}")
        (run_dir / "trained").touch()
    return float(spent_file.read_text())


def run_ours(args, folds: Path, held_out: Path, work: Path, i: int, settings: list[str], results: Path) -> dict:
    """Fold i: train on `folds` (or resume; skipped once trained), then predict its held-out images
    (those of `held_out`, the full folds) with last.pt (no selection on them) under the recipe's
    current post-processing, and score."""
    run_dir = results / f"run_{i}"
    spent_file = run_dir / "train_seconds"
    root = json.loads((folds / "folds.json").read_text())["root"]
    train_once(run_dir, spent_file, *settings, f"dataset.root={root}", f"dataset.folds={folds}", f"dataset.fold={i}")
    post = recipe_postprocess(args.preset, args.overrides)
    done = results / f"fold_{i}.json"
    if done.is_file() and json.loads(done.read_text()).get("postprocess") == post:
        return json.loads(done.read_text())

    from model.data.ufo import write_ufo
    from model.predict import to_ufo

    gt, folder, _ = fold_images(held_out, i)
    dets, ms = detect_timed(run_dir / "last.pt", folder, post)
    pred = run_dir / "held_out.json"
    write_ufo(to_ufo(dets), pred)
    result = {
        "fold": i,
        **score(gt, pred),
        "ms_per_image": ms,
        "train_s": float(spent_file.read_text()),
        "epochs": sum(1 for _ in open(run_dir / "metrics.jsonl")),
        "postprocess": post,
        "train_images": len(json.loads((folds / f"fold_{i}" / "train.json").read_text())["images"]),
    }
    done.write_text(json.dumps(result, indent=1))
    return result


def detect_timed(checkpoint: Path, folder: Path, post: list[str]) -> tuple[dict, float]:
    """Detections of every image in `folder` and the mean ms per image: one image at a time, read,
    resized, detected and post-processed in this process, after an untimed warm-up pass."""
    import torch

    from model.predict import detect, eval_loader, image_split, load_model

    model, cfg = load_model(checkpoint, ["dataset.num_workers=0", *post])
    split = image_split(folder)
    loader = eval_loader(split, cfg, 1)
    pp = dict(cfg.models.head.postprocess)
    device = torch.device("cpu")
    detect(model, loader, device, postprocess=pp)  # warm-up: allocator, kernels
    t0 = time.perf_counter()
    dets = detect(model, loader, device, postprocess=pp, progress=True)
    return dets, 1e3 * (time.perf_counter() - t0) / len(split.images)


def retime(args, work: Path, folds: Path, results: Path, ours: str) -> None:
    """Every detector on the same 24 receipts (fold 0's held-out), one after another, into
    WORK/timing.json: the table's ms column then compares like with like. Fold runs time
    themselves too, but beside whatever else the machine was doing."""
    _, folder, names = fold_images(folds, 0)
    print(
        f"timing: {len(names)} images each; load average now {os.getloadavg()[0]:.1f} "
        "(anything else running inflates every number)",
        flush=True,
    )
    timing_file = work / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    names_file = work / "peers" / "timing-names.txt"
    names_file.parent.mkdir(parents=True, exist_ok=True)
    names_file.write_text("\n".join(names))
    for peer in [p for p in args.peers.split(",") if p]:
        out = work / "peers" / f"{peer}.timing.json"
        sh(
            str(args.peers_python),
            str(Path(__file__).with_name("peers.py")),
            peer,
            str(folder),
            str(names_file),
            str(out),
        )
        timing[PEERS[peer]] = 1e3 * statistics.mean(json.loads(out.read_text())["seconds"].values())
    if (results / "run_0" / "trained").is_file():
        _, ms = detect_timed(results / "run_0" / "last.pt", folder, recipe_postprocess(args.preset, args.overrides))
        timing[ours] = ms
    timing_file.write_text(json.dumps(timing, indent=1))
    print("timing: " + ", ".join(f"{k} {v:.0f} ms" for k, v in timing.items()), flush=True)


def mean_sd(values: list[float]) -> str:
    """mean ± sample sd; one value has no sd (not ± 0)."""
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(rows: list[dict], timing: dict | None = None) -> str:
    """Markdown: mean ± sample sd over folds; ms per image from `timing` (retime) where it has the row."""
    timing = timing or {}
    lines = [
        "| detector | folds | H-Mean | precision | recall | ms / image | training / fold (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r["folds"]
        # the median: a fold trained beside other work takes longer, and one such fold moves a mean
        train = f"{statistics.median(x['train_s'] for x in f) / 60:.1f} min" if "train_s" in f[0] else "—"
        which = "" if len(f) == K or "fold" not in f[0] else f" ({', '.join(str(x['fold']) for x in f)})"
        lines.append(
            f"| {r['name']} | {len(f)}{which} | {mean_sd([x['hmean'] for x in f])} | {mean_sd([x['precision'] for x in f])} "
            f"| {mean_sd([x['recall'] for x in f])} | {timing.get(r['name'], statistics.mean(x['ms_per_image'] for x in f)):.0f} | {train} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.quality",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=REPO_ROOT / "build" / "quality",
        help="data, runs and results (default build/quality)",
    )
    ap.add_argument("--preset", default="cpu_receipts", help="receiptflow's recipe (default cpu_receipts)")
    ap.add_argument("--folds", default=",".join(map(str, range(K))), help="folds to train (default all 5)")
    ap.add_argument(
        "--budget-min", type=float, default=None, help="stop before a fold that would end past this many minutes"
    )
    ap.add_argument("--init-from", default=None, help="start every fold from this checkpoint (init_from=)")
    ap.add_argument("--train-size", type=int, default=None, help="train each fold on this many of its 96 receipts")
    ap.add_argument(
        "--extra-train",
        type=Path,
        default=None,
        help="a dataset root whose labelled receipts join every fold's training part (e.g. sroie-dev converted)",
    )
    ap.add_argument("--peers", default=",".join(PEERS), help="peers to score, comma-separated ('' for none)")
    ap.add_argument("--peers-python", type=Path, default=REPO_ROOT / ".venv-peers" / "bin" / "python")
    ap.add_argument(
        "--retime",
        action="store_true",
        help="time every detector on the same 24 receipts, one after another (run it on an idle machine)",
    )
    ap.add_argument("--tag", default=None, help="results folder name (default: from the settings)")
    ap.add_argument("--label", default=None, help="receiptflow's row in the tables (default: receiptflow `TAG`)")
    ap.add_argument(
        "--record",
        action="store_true",
        help="keep this run's rows and timings in docs/bench-quality.json (the docs' tables come from it)",
    )
    ap.add_argument(
        "--write-docs",
        action="store_true",
        help="rewrite the tables of README.md and docs/*.md from docs/bench-quality.json",
    )
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="training overrides for the recipe")
    args = ap.parse_args(argv)

    began = time.perf_counter()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    folds = prepare_data(work)
    train_folds = train_plus(train_subset(folds, args.train_size, work), args.extra_train, work)
    settings = [f"preset={args.preset}", *args.overrides] + ([f"init_from={args.init_from}"] if args.init_from else [])
    tag = args.tag or "-".join(
        [args.preset]
        + ([f"n{args.train_size}"] if args.train_size else [])
        + ([f"plus-{args.extra_train.name}"] if args.extra_train else [])
        + (["init"] if args.init_from else [])
        + ([hashlib.sha256("\n".join(settings).encode()).hexdigest()[:8]] if args.overrides or args.init_from else [])
    )
    results = work / "results" / tag
    results.mkdir(parents=True, exist_ok=True)
    recorded = {"settings": settings, "train_size": args.train_size}
    if args.extra_train:
        recorded["extra_train"] = str(args.extra_train.resolve())
    kept = results / "settings.json"
    if kept.is_file() and json.loads(kept.read_text()) != recorded:
        raise SystemExit(
            f"bench-quality: {results} holds folds trained with {kept.read_text().strip()}; "
            "give these settings another --tag, or remove that folder"
        )
    kept.write_text(json.dumps(recorded, indent=1))

    rows = [run_peer(p, args.peers_python, folds, work) for p in args.peers.split(",") if p]
    wanted = [int(x) for x in args.folds.split(",") if x]
    for i in wanted:
        trained = [j for j in range(K) if (results / f"run_{j}" / "trained").is_file()]
        if not (results / f"run_{i}" / "trained").is_file():
            used = (time.perf_counter() - began) / 60
            per_fold = (
                statistics.mean(float((results / f"run_{j}" / "train_seconds").read_text()) for j in trained) / 60
                if trained
                else None
            )
            left = [j for j in wanted if j not in trained]
            print(
                f"time: {used:.1f} min so far; {len(left)} fold(s) to train"
                + (
                    f", ~{per_fold:.1f} min each (mean of the {len(trained)} trained)"
                    if per_fold
                    else ", none trained yet to time"
                )
                + (f"; budget {args.budget_min:.0f} min" if args.budget_min is not None else ""),
                flush=True,
            )
            if args.budget_min is not None and per_fold and used + per_fold > args.budget_min:
                print(f"time: fold {i} would end past the budget; stopping here (run again to go on)", flush=True)
                break
        print(f"== receiptflow {tag}: fold {i}", flush=True)
        run_ours(args, train_folds, folds, work, i, settings, results)
    done = [
        json.loads((results / f"fold_{j}.json").read_text()) for j in range(K) if (results / f"fold_{j}.json").is_file()
    ]
    ours = args.label or f"receiptflow `{tag}`"
    if done:
        rows.insert(0, {"name": ours, "folds": done, "settings": settings})
    if args.retime:
        retime(args, work, folds, results, ours)
    timing_file = work / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    report = table(rows, timing)
    (results / "table.md").write_text(report + "\n")
    print(
        f"\n5-fold CV on 120 SROIE receipts (24 held out per fold), CLEval; {time.perf_counter() - began:.0f} s this run\n"
    )
    print(report)
    if args.record or args.write_docs:
        from tests.benchmarks.quality import record

        kept = (
            record.record(rows, {k: v for k, v in timing.items() if k in {r["name"] for r in rows}})
            if args.record
            else record.load()
        )
        for path in record.write_docs(kept) if args.write_docs else []:
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
