"""Label-efficiency report: ``report.json``, ``report.md`` and ``plot.png`` (metric against
labeled cases per arm, with bootstrap 95 % CI bands).

CIs resample the pooled per-(run, test case) values of each arm and label count; the
pretrained-minus-scratch difference is paired by seed and test case."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medssl.evaluation.metrics import bootstrap_ci


def _values(run: dict[str, Any]) -> list[float]:
    vals = [v for v in run.get("per_case") or [] if v is not None and math.isfinite(v)]
    return vals or ([run["value"]] if math.isfinite(run["value"]) else [])


def summarize(runs: list[dict[str, Any]], n_boot: int = 1000) -> dict[str, Any]:
    arms: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        arms[arm] = {}
        for n in sorted({r["n_labeled"] for r in runs if r["arm"] == arm}):
            group = [r for r in runs if r["arm"] == arm and r["n_labeled"] == n]
            pooled = [v for r in group for v in _values(r)]
            arms[arm][str(n)] = {**bootstrap_ci(pooled, n_boot), "runs": [round(r["value"], 5) for r in group],
                                 "seeds": [r["seed"] for r in group]}
    diffs: dict[str, dict[str, Any]] = {}
    for arm, cells in arms.items():
        if arm == "scratch" or "scratch" not in arms:
            continue
        diffs[arm] = {}
        for n in cells:
            paired = []
            for r in runs:
                if r["arm"] != arm or str(r["n_labeled"]) != n:
                    continue
                base = next((b for b in runs if b["arm"] == "scratch" and b["n_labeled"] == r["n_labeled"]
                             and b["seed"] == r["seed"]), None)
                if base is None:
                    continue
                a, b = _values(r), _values(base)
                paired += [x - y for x, y in zip(a, b)] if len(a) == len(b) else [r["value"] - base["value"]]
            if paired:
                diffs[arm][n] = bootstrap_ci(paired, n_boot)
    return {"arms": arms, "difference_vs_scratch": diffs}


def _fmt(ci: dict[str, Any], scale: float = 100.0) -> str:
    if not ci.get("n"):
        return "n/a"
    return f"{scale * ci['mean']:.1f} [{scale * ci['lo']:.1f}, {scale * ci['hi']:.1f}]"


def write_markdown(report: dict[str, Any], path: Path) -> None:
    metric = report["metric"]
    arms = report["arms"]
    ns = sorted({int(n) for a in arms.values() for n in a})
    lines = [f"# Label-efficiency sweep: {metric} (x100, mean [95% bootstrap CI])", ""]
    lines += ["| labeled cases | " + " | ".join(arms) + " | " + " | ".join(f"{a} - scratch" for a in
                                                                          report["difference_vs_scratch"]) + " |"]
    lines += ["|---" * (1 + len(arms) + len(report["difference_vs_scratch"])) + "|"]
    for n in ns:
        cells = [_fmt(arms[a].get(str(n), {})) for a in arms]
        cells += [_fmt(d.get(str(n), {})) for d in report["difference_vs_scratch"].values()]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", f"Runs: {len(report['runs'])}; seeds per cell: "
              + ", ".join(sorted({str(len(c['runs'])) for a in arms.values() for c in a.values()})) + "."]
    for key, value in (report.get("meta") or {}).items():
        lines.append(f"- {key}: {value}")
    lines += ["", "CIs resample pooled per-(run, test case) values; differences are paired by seed and case.",
              "Small sweeps give wide intervals: read overlapping CIs as 'no measurable difference'."]
    path.write_text("\n".join(lines) + "\n")


def write_plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    for arm, cells in report["arms"].items():
        ns = sorted(int(n) for n in cells)
        mean = np.array([cells[str(n)]["mean"] for n in ns], dtype=float)
        lo = np.array([cells[str(n)]["lo"] for n in ns], dtype=float)
        hi = np.array([cells[str(n)]["hi"] for n in ns], dtype=float)
        ax.plot(ns, mean, marker="o", label=arm)
        ax.fill_between(ns, lo, hi, alpha=0.2)
    ax.set_xticks(sorted({int(n) for cells in report["arms"].values() for n in cells}))
    ax.set_xlabel("labeled training cases")
    ax.set_ylabel(report["metric"])
    ax.set_title("label efficiency (95% bootstrap CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_sweep_report(runs: list[dict[str, Any]], out: Path, *, metric: str = "dice", n_boot: int = 1000,
                       meta: dict[str, Any] | None = None) -> dict[str, Any]:
    report = {"metric": metric, **summarize(runs, n_boot), "runs": runs, "meta": meta or {}}
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out / "report.json")
    write_markdown(report, out / "report.md")
    write_plot(report, out / "plot.png")
    return report
