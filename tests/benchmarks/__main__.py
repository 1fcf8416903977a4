"""`make bench`: every benchmark, one core, on the SROIE sample; prints one table per benchmark."""
from __future__ import annotations

import json
import shutil
import sys

from tests.benchmarks import bench_datapath, bench_targets
from tests.benchmarks.common import one_core, sroie_root


def main() -> int:
    one_core()
    root = sroie_root()
    if root is None:
        return 0
    try:
        for name, bench in (("targets", bench_targets), ("data path", bench_datapath)):
            print(f"== {name}", flush=True)
            print(json.dumps(bench.run(root), indent=1, ensure_ascii=False), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
