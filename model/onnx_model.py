"""A trained detector as one ONNX file, and the same prediction path run by onnxruntime.

    receiptflow export runs/run8/best.pt -o model.onnx
    receiptflow predict model.onnx DATA_OR_IMAGES -o predictions.json      # onnxruntime, no torch model

`export` writes the network up to the probability map: input `image`, float32 (N, 3, H, W), the canvas
normalised with ImageNet's mean and std; output `prob`, float32 (N, H, W) in [0, 1]; N, H and W dynamic
(H and W multiples of 32). Everything else a user needs travels in the file's metadata (`metadata_props`):

- `receiptflow.preprocess`: canvas size, resize and padding rule, channel order, scale, mean and std;
- `receiptflow.postprocess`: the checkpoint's `models.head.postprocess` (thresholds, unclip ratio, ...);
- `receiptflow.config`: the checkpoint's whole config (what `predict` reads back);
- `receiptflow.source`: the checkpoint's sha256, the exporter (torch's TorchScript exporter at its
  version) and the opset.

`OnnxDetector` stands where the torch model stands in `model.predict.detect` (a callable returning
{"prob": tensor}), so a .onnx model and a checkpoint share every step around the network: the eval
transform, TTA, post-processing through the canvas→original matrix, the maps for fusion.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from model.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from model.errors import DataError

OPSET = 18
FORMAT = "1"  # receiptflow.format: bumped when the metadata or the graph's contract changes
INPUT, OUTPUT = "image", "prob"


def export(checkpoint: str | Path, out: str | Path, *, opset: int = OPSET) -> dict:
    """Write `checkpoint`'s network as ONNX to `out` (atomically); returns the metadata written."""
    import onnx
    import torch
    from omegaconf import OmegaConf

    from model.predict import load_model

    model, cfg = load_model(checkpoint)
    model.eval()
    size = int(cfg.dataset.image_size)
    stride = int(model.stride)

    class ProbOnly(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):
            return self.net(image, all_maps=False)["prob"]

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "receiptflow.format": FORMAT,
        "receiptflow.preprocess": json.dumps(
            {
                "canvas": size,
                "stride": stride,
                "layout": "NCHW",
                "dtype": "float32",
                "channels": "RGB",
                "resize": "longest side to `canvas` (aspect kept), bilinear (OpenCV INTER_LINEAR)",
                "pad": "bottom and right with 0 (before normalising) to canvas x canvas",
                "scale": 1 / 255,
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
                "normalise": "(pixel / 255 - mean) / std, per channel",
            }
        ),
        "receiptflow.postprocess": json.dumps(OmegaConf.to_container(cfg.models.head.postprocess)),
        "receiptflow.config": json.dumps(OmegaConf.to_container(cfg)),
        "receiptflow.source": json.dumps(
            {
                "checkpoint": Path(checkpoint).name,
                "sha256": _sha256(checkpoint),
                "exporter": f"torch {torch.__version__} torch.onnx.export (TorchScript, dynamo=False)",
                "opset": opset,
            }
        ),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer's notes on shape checks (DBNet's multiple-of-32 check, the decoder's size test): constant
            # for every size that is a multiple of the stride, which the parity tests run at several sizes
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # torch 2.14 calls the TorchScript exporter legacy; its dynamo exporter took minutes on a Lite0 DBNet
            # here and needs onnxscript (pyproject.toml pins torch, so this one stays)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                ProbOnly(model).eval(),
                (torch.zeros(1, 3, size, size),),
                tmp,
                input_names=[INPUT],
                output_names=[OUTPUT],
                opset_version=opset,
                dynamo=False,
                dynamic_axes={
                    INPUT: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT: {0: "batch", 1: "height", 2: "width"},
                },
            )
        proto = onnx.load(tmp)
        proto.producer_name, proto.producer_version = "receiptflow", _version()
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return metadata


class OnnxDetector:
    """A .onnx file written by `export`, run by onnxruntime on the CPU; `self.cfg` is the exported config."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort
        from omegaconf import OmegaConf

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for any unreadable file
            raise DataError(
                f"{self.path}: not a readable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "receiptflow.config" not in meta:
            raise DataError(
                f"{self.path}: an ONNX model without receiptflow's metadata (receiptflow.config): write it "
                "with `receiptflow export CHECKPOINT -o MODEL.onnx`"
            )
        if meta.get("receiptflow.format") != FORMAT:
            raise DataError(
                f"{self.path}: receiptflow ONNX format {meta.get('receiptflow.format')!r}, this receiptflow "
                f"reads {FORMAT!r}: export the checkpoint again"
            )
        names = ([i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()])
        if names != ([INPUT], [OUTPUT]):
            raise DataError(f"{self.path}: inputs/outputs {names}, expected ([{INPUT!r}], [{OUTPUT!r}])")
        self.metadata = meta
        self.cfg = OmegaConf.create(json.loads(meta["receiptflow.config"]))
        self.stride = int(json.loads(meta["receiptflow.preprocess"])["stride"])

    # the torch model's interface, as far as model.predict.detect uses it
    def eval(self) -> "OnnxDetector":
        return self

    def to(self, device) -> "OnnxDetector":
        if getattr(device, "type", str(device)) != "cpu":
            raise DataError(
                f"{self.path}: a .onnx model runs on the CPU here (onnxruntime's CPU provider); "
                "drop --device or predict with the checkpoint"
            )
        return self

    def __call__(self, image) -> dict:
        import torch

        prob = self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(image.detach().cpu().numpy(), np.float32)})[0]
        return {"prob": torch.from_numpy(prob)}


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("receiptflow")
    except PackageNotFoundError:
        return "unknown"
