"""Prediction: images → UFO JSON of word polygons in original pixels.

    receiptflow predict runs/run8/best.pt DATA_OR_IMAGES -o predictions.json [--tta] [--scores] [--maps DIR]
    receiptflow predict model.onnx DATA_OR_IMAGES -o predictions.json     # `receiptflow export`'s file, onnxruntime

Batches go through the network once (or twice with horizontal-flip test-time augmentation, the
two probability maps averaged), then `model.postprocess` turns each probability map into
polygons mapped back through the sample's exact canvas→original matrix (`image_detections`, the
one path from a map to words that map fusion, `model.fusion`, takes too). With `maps_dir` each
image's map is also stored with its matrix (`model.probmaps`).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import shapely
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.checkpoint import load_checkpoint
from model.data.dataset import DetectionDataset, collate
from model.data.images import IMAGE_SUFFIXES
from model.data.polygons import at_least_four_points, clip_polygons
from model.data.transforms import eval_transform
from model.data.ufo import DatasetRoot, Images, Problem, Report, Split, Word, probe_images, word_ids
from model.errors import DataError
from model.net import build_model
from model.postprocess import Detection, postprocess


def postprocess_options(head_pp: Mapping) -> dict:
    """The config's `models.head.postprocess` as `model.postprocess` keyword arguments."""
    pp = dict(head_pp)
    mode = "polygon" if pp.pop("use_polygon", True) else "box"
    return {**pp, "mode": mode}


@torch.no_grad()
def detect(
    model,
    loader: DataLoader,
    device: torch.device,
    *,
    postprocess: Mapping,
    amp_dtype=None,
    tta_flip: bool = False,
    progress: bool = False,
    on_map=None,
) -> dict[str, list[Detection]]:
    """Run `model` over `loader` (batches from `collate`): file name -> detections in original pixels.

    `postprocess` is the config's `models.head.postprocess`; `on_map(name, prob, to_original,
    (width, height))`, when given, receives each image's float32 (H, W) map as post-processed."""
    model.eval()
    options = postprocess_options(postprocess)
    out: dict[str, list[Detection]] = {}
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    for batch in tqdm(loader, desc="predict", disable=not progress, leave=False):
        moved = batch.to(device)
        with autocast:
            prob = model(moved.image)["prob"].float()
            if tta_flip:
                prob = (prob + model(moved.image.flip(-1))["prob"].float().flip(-1)) / 2
        probs = prob.cpu().numpy()
        probs = probs[:, 0] if probs.ndim == 4 else probs
        matrices = batch.to_original.numpy().astype(np.float64)
        for name, p, m, (w, h) in zip(batch.names, probs, matrices, batch.original_size.tolist()):
            if on_map is not None:
                on_map(name, p, m, (w, h))
            out[name] = image_detections(p, m, (w, h), options)
    return out


def image_detections(
    prob: np.ndarray, to_original: np.ndarray, original_size: tuple[int, int], options: Mapping
) -> list[Detection]:
    """One image's (H, W) canvas map → its words in original pixels: post-processing with
    `options` (`model.postprocess` keywords, see `postprocess_options`), through the canvas→original
    matrix, then clipped to the image (`on_image`)."""
    width, height = original_size
    return on_image(postprocess(prob, to_original=to_original, **options), int(width), int(height))


def on_image(detections: list[Detection], width: int, height: int) -> list[Detection]:
    """Detections clipped to the image (the canvas padding is not the image), degenerate ones
    dropped, each with at least the 4 points a UFO word needs."""
    polygons, kept = clip_polygons([d.points for d in detections], width, height)
    return [
        Detection(at_least_four_points(p), detections[i].score)
        for p, i in zip(polygons, kept)
        if len(p) >= 3 and shapely.Polygon(p).area > 0
    ]


def load_model(
    checkpoint: str | Path, overrides: list[str] = (), *, tuned: bool = True
) -> tuple[torch.nn.Module, DictConfig]:
    """The network of a checkpoint, and its config with `overrides` (dotted key=value) applied; for a `.onnx`
    file (`receiptflow export`), an onnxruntime session standing in for the network (model.onnx_model).
    `tuned`: the post-processing `receiptflow tune` stored in the checkpoint replaces the config's, under
    the overrides (model.tune); False: the config's as trained."""
    from model.config import apply_overrides
    from model.tune import apply_tuned

    if Path(checkpoint).suffix.lower() == ".onnx":
        from model.onnx_model import OnnxDetector

        detector = OnnxDetector(checkpoint)
        return detector, apply_overrides(detector.cfg, list(overrides))
    saved = load_checkpoint(checkpoint)
    cfg = OmegaConf.create(saved["config"])
    if tuned:
        apply_tuned(cfg, saved)
    cfg = apply_overrides(cfg, list(overrides))
    cfg.models.encoder.pretrained = False  # the checkpoint holds the weights
    cfg.models.encoder.weights = None
    model = build_model(cfg.models)
    model.load_state_dict(saved["model"])
    return model, cfg


def eval_loader(split: Split, cfg: DictConfig, batch_size: int | None = None) -> DataLoader:
    """Batches of `split` through the eval transform, no targets, in file order."""
    dataset = DetectionDataset(split, eval_transform(cfg.dataset.image_size), with_targets=False)
    return DataLoader(
        dataset,
        batch_size=batch_size or cfg.dataset.batch_size,
        collate_fn=collate,
        num_workers=cfg.dataset.num_workers,
    )


def image_split(source: str | Path, split: str = "test") -> Split:
    """A dataset root's split (annotations optional), or a plain folder of images."""
    source = Path(source)
    if (source / "images").is_dir():
        return DatasetRoot(source).load(split, strict=False)
    if not source.is_dir():
        raise DataError(f"{source}: neither a dataset root nor a folder of images")
    names = sorted(p.name for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise DataError(f"{source}: no .jpg/.jpeg/.png images here")
    report, sizes = Report(strict=False), {}
    for name, size, problem in probe_images(source, names, decode=True):
        if problem:
            report.add(Problem(str(source / name), problem))
        else:
            sizes[name] = size
    return Split(split, source, {n: {} for n in sizes}, sizes, report)


def to_ufo(detections: Mapping[str, list[Detection]], *, scores: bool = False) -> Images:
    images: Images = {}
    for name, dets in detections.items():
        images[name] = {
            wid: Word(d.points, None, d.score if scores else None) for wid, d in zip(word_ids(len(dets)), dets)
        }
    return images


def predict(
    checkpoint,
    source,
    *,
    split: str = "test",
    overrides=(),
    tta_flip: bool = False,
    scores: bool = False,
    batch_size: int | None = None,
    device: str | None = None,
    maps_dir: str | Path | None = None,
) -> Images:
    """Words of every image of `source` (a dataset root's `split`, or a folder of images) as UFO
    `Images`; with `maps_dir`, each image's probability map is also stored there (`model.probmaps`:
    `<image>.png` + `<image>.json`, maps of the same names replaced)."""
    model, cfg = load_model(checkpoint, overrides)
    onnx = Path(checkpoint).suffix.lower() == ".onnx"  # onnxruntime's CPU provider
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() and not onnx else "cpu"))
    model.to(dev)
    data = image_split(source, split)
    for problem in data.report.problems:
        print(f"skipped: {problem}", flush=True)
    pp = OmegaConf.to_container(cfg.models.head.postprocess)
    on_map = None
    if maps_dir is not None:
        from model.probmaps import write_map

        options = postprocess_options(pp)

        def on_map(name, prob, to_original, size):
            write_map(maps_dir, name, prob, to_original, size, options, tta=bool(tta_flip))

    dets = detect(
        model, eval_loader(data, cfg, batch_size), dev, postprocess=pp, tta_flip=tta_flip, progress=True, on_map=on_map
    )
    return to_ufo(dets, scores=scores)
