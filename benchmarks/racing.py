"""Shared helpers of the benchmarks that race medssl against the code users would otherwise
run: interleaved repeats, one JSON line per figure, and where the reference code lives.

Every figure is one JSON line:
    {"figure", "medssl", "reference", "ratio", "spread", "equal", "unit", "repeats", ...}
``medssl`` and ``reference`` are medians over ``repeats`` interleaved runs (A B A B ...),
``ratio`` the median of the pair-by-pair ratios medssl / reference (below 1: medssl is
faster or smaller), ``spread`` [min, max] of those ratios, ``equal`` whether the outputs
agree where they should (``null`` where the two do different random work)."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# ../shared/reference beside the checkout (never copied into the project); on a GPU machine,
# where ../shared does not travel, `make gpu-wheels` puts a copy into the ignored .whl/.
REFERENCE_DIRS = (REPO.parent / "shared" / "reference", REPO / ".whl" / "reference")
REAL_DATA_DIRS = (REPO.parent / "shared" / "data" / "real",)


def reference_dir(name: str) -> Path:
    """Folder of one reference code base (e.g. "swinunetr_pretrain_cpu"); $MEDSSL_REFERENCE first."""
    roots = [Path(os.environ["MEDSSL_REFERENCE"])] if os.environ.get("MEDSSL_REFERENCE") else []
    for root in [*roots, *REFERENCE_DIRS]:
        if (root / name).is_dir():
            return root / name
    raise SystemExit(f"reference code '{name}' not found under {[str(r) for r in [*roots, *REFERENCE_DIRS]]}")


def real_data_dir() -> Path:
    roots = [Path(os.environ["MEDSSL_REAL_DATA"])] if os.environ.get("MEDSSL_REAL_DATA") else []
    for root in [*roots, *REAL_DATA_DIRS]:
        if root.is_dir():
            return root
    raise SystemExit("real sample data not found: set MEDSSL_REAL_DATA or place it at ../shared/data/real")


def emit(figure: str, medssl: float, reference: float, unit: str, *, ratios: list[float] | None = None,
         equal: bool | None = None, repeats: int = 1, **extra: Any) -> dict[str, Any]:  # fmt: skip
    """Print one figure as a JSON line and return it."""
    ratios = ratios or [medssl / reference if reference else float("nan")]
    row = {"figure": figure, "medssl": _round(medssl), "reference": _round(reference),
           "ratio": _round(statistics.median(ratios)), "spread": [_round(min(ratios)), _round(max(ratios))],
           "equal": equal, "unit": unit, "repeats": repeats, **extra}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def race(medssl: Callable[[], Any], reference: Callable[[], Any], repeats: int, *, warmup: int = 1,
         clock: Callable[[], float] = time.perf_counter) -> tuple[list[float], list[float]]:  # fmt: skip
    """Seconds of each run, medssl and reference in turn (A B A B ...), after ``warmup`` of each."""
    a, b = [], []
    for i in range(warmup + repeats):
        for fn, out in ((medssl, a), (reference, b)):
            gc.collect()
            start = clock()
            fn()
            took = clock() - start
            if i >= warmup:
                out.append(took)
    return a, b


class Side:
    """One side of a race in a process of its own, so that what one side sets process-wide
    (``medssl predict`` keeps freed memory for reuse, see ``medssl.devices``) never reaches
    the other. ``Side(make, *args)`` runs ``make(*args)`` in a spawned process once to get
    the side's callable; each ``side()`` then runs it there and returns its result."""

    def __init__(self, make: Callable[..., Callable[[], Any]], *args: Any) -> None:
        spawn = multiprocessing.get_context("spawn")
        self._conn, child = spawn.Pipe()
        self._proc = spawn.Process(target=_serve, args=(child, make, args), daemon=True)
        self._proc.start()
        self._receive()  # built, or the error that stopped it

    def __call__(self) -> Any:
        self._conn.send("run")
        return self._receive()

    def _receive(self) -> Any:
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"race side failed: {value}")
        return value

    def close(self) -> None:
        self._conn.send(None)
        self._proc.join(timeout=60)


def _serve(conn, make: Callable[..., Callable[[], Any]], args: tuple) -> None:  # noqa: ANN001
    try:
        fn = make(*args)
        conn.send((True, None))
        while conn.recv() is not None:
            gc.collect()
            conn.send((True, fn()))
    except BaseException as exc:  # noqa: BLE001  (reported to the parent, which raises)
        conn.send((False, f"{type(exc).__name__}: {exc}"))


def emit_race(figure: str, a: list[float], b: list[float], unit: str = "s", **extra: Any) -> dict[str, Any]:
    return emit(figure, statistics.median(a), statistics.median(b), unit,
                ratios=[x / y for x, y in zip(a, b)], repeats=len(a), **extra)  # fmt: skip


def cpu_clock() -> float:
    """CPU seconds of this process and its finished children (user + system)."""
    self_, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + kids.ru_utime + kids.ru_stime


def add_common_args(parser) -> None:  # noqa: ANN001
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run at tiny sizes")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved timed repeats (median)")
