"""torch eager vs onnxruntime: ms per receipt and peak memory of prediction, for each CPU preset.

Each preset's network as built (cpu_receipts: its ImageNet Lite0 encoder; decoders random: the time of a
forward pass does not depend on the weights) is exported with `receiptflow export`; then each runtime predicts
the same N_IMAGES SROIE receipts at the preset's canvas in a fresh process (batch 1, 2 threads: what a laptop
or a 2-core pod has), through model.predict's one path (read, resize, network, post-process), so the peak RSS
is that runtime's alone. Reported: ms per receipt (the first receipt, warm-up, excluded), the ratio, peak RSS,
whether both gave the same words, and the network alone on one canvas (what the runtimes differ in; decode,
resize and post-processing are the same code for both).

    python -m tests.benchmarks bench_onnx
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESETS = ("cpu_tiny", "cpu_receipts")
N_IMAGES = 24
THREADS = 2


def run(root: Path) -> dict:
    import torch
    from omegaconf import OmegaConf

    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.net import build_model
    from model.onnx_model import export

    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for preset in PRESETS:
            cfg = load_config([f"preset={preset}"])
            torch.manual_seed(0)
            ckpt = Path(tmp) / f"{preset}.pt"
            save_checkpoint(
                ckpt, {"model": build_model(cfg.models).state_dict(), "config": OmegaConf.to_container(cfg)}
            )
            started = time.perf_counter()
            export(ckpt, Path(tmp) / f"{preset}.onnx")
            export_s = time.perf_counter() - started
            runs = {kind: _measure(Path(tmp) / f"{preset}.{kind}", root) for kind in ("pt", "onnx")}
            network = _network_ms(Path(tmp) / f"{preset}.pt", Path(tmp) / f"{preset}.onnx", int(cfg.dataset.image_size))
            words = {k: json.loads(Path(r.pop("words")).read_text()) for k, r in runs.items()}
            out[preset] = {
                "canvas px": int(cfg.dataset.image_size),
                "torch ms/receipt": runs["pt"]["ms"],
                "onnxruntime ms/receipt": runs["onnx"]["ms"],
                "speed-up": round(runs["pt"]["ms"] / runs["onnx"]["ms"], 2),
                "network alone, torch / onnxruntime ms": network,
                "network speed-up": round(network[0] / network[1], 2),
                "torch peak RSS MB": runs["pt"]["rss_mb"],
                "onnxruntime peak RSS MB": runs["onnx"]["rss_mb"],
                "same words": words["pt"] == words["onnx"],
                "export s": round(export_s, 1),
            }
    return out


def _network_ms(checkpoint: Path, onnx_model: Path, size: int, repeat: int = 10) -> tuple[float, float]:
    """One canvas through the network alone (no decode, resize or post-processing), THREADS threads each."""
    import torch

    from model.onnx_model import OnnxDetector
    from model.predict import load_model

    torch.set_num_threads(THREADS)
    net, _ = load_model(checkpoint)
    det, x = OnnxDetector(onnx_model, threads=THREADS), torch.randn(1, 3, size, size)
    out = []
    with torch.no_grad():
        for run in (lambda: net.eval()(x, all_maps=False), lambda: det(x)):
            for _ in range(3):
                run()
            start = time.perf_counter()
            for _ in range(repeat):
                run()
            out.append(round((time.perf_counter() - start) / repeat * 1e3, 1))
    return out[0], out[1]


def _measure(model: Path, root: Path) -> dict:
    res = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_onnx", str(model), str(root)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def _one(model: str, root: str) -> dict:
    """In its own process: predict N_IMAGES receipts with `model` (.pt or .onnx), batch 1, THREADS threads."""
    import dataclasses

    import torch
    from omegaconf import OmegaConf

    from model.data.ufo import DatasetRoot
    from model.predict import detect, eval_loader, load_model

    torch.set_num_threads(THREADS)
    net, cfg = load_model(model, ["dataset.batch_size=1", "dataset.num_workers=0"])
    if hasattr(net, "session"):  # onnxruntime: the same thread count
        from model.onnx_model import OnnxDetector

        net = OnnxDetector(model, threads=THREADS)
    split = DatasetRoot(root).load("train", strict=False)
    names = sorted(split.images)[:N_IMAGES]
    split = dataclasses.replace(
        split, images={n: split.images[n] for n in names}, sizes={n: split.sizes[n] for n in names}
    )
    pp = OmegaConf.to_container(cfg.models.head.postprocess)
    stamps = []
    dets = detect(
        net,
        eval_loader(split, cfg),
        torch.device("cpu"),
        postprocess=pp,
        on_map=lambda *_: stamps.append(time.perf_counter()),
    )
    words = Path(model).with_suffix(Path(model).suffix + ".words.json")
    words.write_text(
        json.dumps(
            {n: [d.points.tolist() if hasattr(d.points, "tolist") else d.points for d in v] for n, v in dets.items()}
        )
    )
    per = [b - a for a, b in zip(stamps, stamps[1:])]  # receipt k's read + network + the previous one's post-process
    return {
        "ms": round(sum(per) / len(per) * 1e3, 1),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "words": str(words),
    }


if __name__ == "__main__":
    print(json.dumps(_one(sys.argv[1], sys.argv[2])))
