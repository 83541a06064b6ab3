"""Seeded mutation fuzzing of medssl's readers; prints one JSON line of counts per outcome.

    python benchmarks/fuzz_readers.py --n 3000 [--seed 0] [--real-data ../shared/data/real]

Each case mutates copies of real files (8 slices of the real DICOM head CT series, a crop of
a real brain MR NIfTI): header fields, raw elements, pixel data, file sets, zips, header bytes
of NIfTI and gzip streams. Every outcome must be ``ok`` (a sane read) or ``error:<code>`` (a
typed MedsslError); anything else is listed with its seed (rerun one with --seed S --n 1).
Exit status 1 when any case is a bug."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.unit.io.io_fuzz_cases import build_corpus, run_many  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="number of cases")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--real-data", type=Path, default=REPO.parent / "shared" / "data" / "real")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the readers' warnings on odd-but-valid cases are not news here
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_corpus(args.real_data, Path(tmp))
        counts, bugs = run_many(corpus, Path(tmp), range(args.seed, args.seed + args.n))
    record = {"figure": "fuzz_readers", "cases": args.n, "seconds": round(time.perf_counter() - start, 1),
              "bugs": len(bugs), "outcomes": dict(sorted(counts.items()))}  # fmt: skip
    print(json.dumps(record))
    for seed, label, outcome in bugs[:50]:
        print(json.dumps({"seed": seed, "case": label, "outcome": outcome}))
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
