"""Seeded, bounded mutation fuzzing of the readers on the real files (300 cases, ~20 s on
2 CPU cores): every outcome must be a sane read or a typed MedsslError. For thousands of
cases: ``python benchmarks/fuzz_readers.py --n 5000``."""

from __future__ import annotations

import json
import time

import pytest

from tests.unit.io.io_fuzz_cases import build_corpus, run_many

pytestmark = pytest.mark.realdata
CASES = 300
BUDGET_S = 120


@pytest.mark.filterwarnings("ignore::UserWarning:nibabel")  # medssl.io ignores them too; pytest resets filters
def test_mutated_real_files_give_a_read_or_a_typed_error(real_data, tmp_path, record_property, capsys):
    start = time.perf_counter()
    corpus = build_corpus(real_data, tmp_path)
    counts, bugs = run_many(corpus, tmp_path, range(CASES))
    seconds = time.perf_counter() - start
    report = {"cases": CASES, "seconds": round(seconds, 1), "outcomes": dict(sorted(counts.items()))}
    record_property("fuzz_outcomes", json.dumps(report))
    with capsys.disabled():
        print(f"\nfuzz_readers: {json.dumps(report)}")
    assert not bugs, f"{len(bugs)} case(s) escaped as untyped or wrong reads (seed, case, outcome): {bugs[:20]}"
    assert counts["ok"] > CASES // 5 and sum(v for k, v in counts.items() if k.startswith("error:")) > CASES // 5
    assert seconds < BUDGET_S
