"""`receiptflow predict CHECKPOINT|MODEL.onnx SOURCE -o OUT.json`: images → UFO JSON in original pixels."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="detect words in images with a trained checkpoint or its .onnx; writes UFO JSON",
        description="Detect words with a checkpoint (best.pt/last.pt), or with the .onnx `receiptflow export` wrote "
        "(onnxruntime on the CPU, the same pre- and post-processing). SOURCE is a dataset root (its --split, "
        "default test) or a folder of images. Extra key=value arguments override the checkpoint's config, e.g. "
        "models.head.postprocess.box_thresh=0.3.",
    )
    p.add_argument("checkpoint", help="checkpoint written by `receiptflow train`, or MODEL.onnx (`receiptflow export`)")
    p.add_argument("source", help="dataset root or folder of images")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides (post-processing, batch size, ...)"
    )
    p.add_argument("-o", "--output", required=True, help="UFO JSON to write")
    p.add_argument("--split", default="test", help="split of a dataset root (default test)")
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--scores", action="store_true", help="write each word's score")
    p.add_argument(
        "--maps",
        default=None,
        metavar="DIR",
        help="also keep each image's probability map in DIR (<image>.png, 8-bit, + <image>.json with its "
        "canvas->original matrix) for `receiptflow ensemble --mode maps`",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.set_defaults(func=run)


def run(args) -> int:
    from model.data.ufo import write_ufo
    from model.predict import predict

    images = predict(
        args.checkpoint,
        args.source,
        split=args.split,
        overrides=args.overrides,
        tta_flip=args.tta,
        scores=args.scores,
        device=args.device,
        maps_dir=args.maps,
    )
    write_ufo(images, Path(args.output))
    words = sum(len(w) for w in images.values())
    print(f"wrote {args.output}: {len(images)} images, {words} words")
    if args.maps is not None:
        print(f"maps: {len(images)} in {args.maps}")
    return 0
