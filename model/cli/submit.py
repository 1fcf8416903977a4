"""`receiptflow submit`: UFO predictions -> submission CSV, and checking a submission CSV.

receiptflow submit PRED.json -o submission.csv [--images DIR_or_dataset_root]
receiptflow submit --check submission.csv --images DIR_or_dataset_root
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "submit",
        help="write the leaderboard CSV from UFO predictions, or check a CSV",
        description="Write the submission CSV (filename,polygons) from UFO predictions, checked against the test "
        "images when --images is given; or, with --check, check an existing CSV against the test images.",
    )
    p.add_argument("pred", nargs="?", help="UFO JSON predictions")
    p.add_argument("-o", "--output", help="submission CSV to write")
    p.add_argument("--check", metavar="CSV", help="check this submission CSV instead of writing one (needs --images)")
    p.add_argument("--images", help="the test images: a folder of images, or a dataset root (its images/test/)")
    p.add_argument(
        "--lenient", action="store_true", help="when writing: write the CSV even if the check finds problems (exit 1)"
    )
    p.set_defaults(func=run, parser=p)


def run(args) -> int:
    from model.data.ufo import read_ufo
    from model.submission import check_submission, list_test_images, write_submission

    if args.check:
        if args.pred or args.output:
            args.parser.error("--check takes no PRED.json and no -o")
        if not args.images:
            args.parser.error("--check needs --images (the test images to check against)")
        report = check_submission(args.check, list_test_images(args.images), strict=False)
        for problem in report.problems:
            print(problem)
        print(f"{args.check}: {'OK' if not report.problems else f'{len(report.problems)} problem(s)'}")
        return 1 if report.problems else 0
    if not args.pred or not args.output:
        args.parser.error("give PRED.json and -o submission.csv (or --check CSV --images DIR)")
    images, _ = read_ufo(args.pred)
    names = list_test_images(args.images) if args.images else None
    report = write_submission(images, args.output, image_names=names, strict=not args.lenient)
    for problem in report.problems:
        print(problem)
    n_words = sum(len(w) for w in images.values())
    checked = f", checked against {len(names)} test images" if names is not None else ""
    print(
        f"{args.output}: {len(images)} rows, {n_words} polygons{checked}{f'; {len(report.problems)} problem(s)' if report.problems else ''}"
    )
    return 1 if report.problems else 0
