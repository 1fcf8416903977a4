"""`receiptflow export CHECKPOINT -o MODEL.onnx`: the detector as one ONNX file (model/onnx_model.py)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a checkpoint's detector as ONNX (for onnxruntime; `predict MODEL.onnx` runs it)",
        description="Export a checkpoint's network, image in, probability map out (dynamic batch, height and width; "
        "torch's TorchScript exporter), with the pre-processing (canvas, resize, padding, mean/std), the "
        "post-processing settings and the config as ONNX metadata. `receiptflow predict MODEL.onnx ...` runs it with "
        "onnxruntime through the same pre- and post-processing as the checkpoint.",
    )
    p.add_argument("checkpoint", help="checkpoint written by `receiptflow train` (best.pt, last.pt)")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.set_defaults(func=run)


def run(args) -> int:
    from model.errors import DataError
    from model.onnx_model import OPSET, export

    if not args.output.lower().endswith(".onnx"):
        raise DataError(f"-o {args.output}: expected a .onnx file name (predict tells models apart by it)")
    export(args.checkpoint, args.output, opset=args.opset or OPSET)
    from pathlib import Path

    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.1f} MB, opset {args.opset or OPSET})")
    return 0
