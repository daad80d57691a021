"""Where `lrbench run` spends its time, cold and with the crop cache warm, measured in one process.

    python benchmarks/bench_run_cache.py                       # real LFW from ../shared when present
    python benchmarks/bench_run_cache.py --data DIR --df 1,8   # any LFW-format folder

Prints the stage timings of a cold run and of a second run that hits the disk cache, and the share of the
second run's wall time spent outside decoding and alignment (the target: nearly all of it).
"""

import argparse
import tempfile
import time
from pathlib import Path

from lrbench.data.synth import synthesize
from lrbench.eval.engine import EvalSettings, evaluate

SHARED_LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, help="LFW-format folder (default: ../shared LFW, else synthetic)"
    )
    parser.add_argument("--df", default="8")
    parser.add_argument("--backbone", default="lbp")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            data = (
                SHARED_LFW
                if (SHARED_LFW / "pairs.txt").is_file()
                else synthesize(Path(scratch) / "synth").lfw_root
            )
        cache = Path(scratch) / "cache"
        print(f"data {data}, backbone {args.backbone}, DF {args.df}")
        header = ("run", "total s", "decode+align s", "features s", "metrics s", "outside decode")
        print("{:<6} {:>8} {:>15} {:>11} {:>10} {:>15}".format(*header))
        for name in ("cold", "cached"):
            started = time.perf_counter()
            run = evaluate(
                EvalSettings(
                    backbone=args.backbone, data=data, dfs=args.df, cache_dir=cache, show_progress=False
                )
            )
            total = time.perf_counter() - started
            t = run.manifest["timings"]
            share = 1 - t["decode_align_s"] / total
            print(
                f"{name:<6} {total:8.2f} {t['decode_align_s']:15.2f} {t['features_s']:11.2f} "
                f"{t['metrics_s']:10.3f} {share:15.1%}"
            )


if __name__ == "__main__":
    main()
