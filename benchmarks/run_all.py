"""Every race against the reference code, one after another: what ``make bench`` runs.

    python benchmarks/run_all.py                  # about 10-15 minutes on a 2-core CPU
    python benchmarks/run_all.py --quick          # smoke run of every benchmark
    python benchmarks/run_all.py --out bench.jsonl

Prints each benchmark's JSON lines as they come, then a Markdown table of every figure
(medssl, reference, ratio medssl / reference with its [min, max] over the repeats, outputs
equal). A benchmark that fails makes the exit status non-zero; the others still run."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("bench_io.py", "bench_feed.py", "bench_predict.py", "bench_ssl_step.py")


def table(rows: list[dict]) -> str:
    lines = ["| figure | medssl | reference | unit | ratio [min, max] | equal | repeats |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        equal = {True: "yes", False: "**no**", None: "-"}[r.get("equal")]
        lo, hi = r["spread"]
        lines.append(f"| {r['figure']} | {r['medssl']:.4g} | {r['reference']:.4g} | {r['unit']} | "
                     f"{r['ratio']:.3g} [{lo:.3g}, {hi:.3g}] | {equal} | {r['repeats']} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    p.add_argument("--out", type=Path, help="also write the JSON lines here")
    args = p.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    rows, failed = [], []
    for name in args.only:
        start = time.perf_counter()
        cmd = [sys.executable, str(HERE / name), *(["--quick"] if args.quick else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE.parent)
        got = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        for row in got:
            print(json.dumps(row), flush=True)
        rows.extend(got)
        if proc.returncode != 0 or not got:
            failed.append(name)
            print(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
        print(f"# {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print()
    print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
