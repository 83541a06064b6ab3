"""Label-efficiency report: ``report.json``, ``report.md`` and ``plot.png`` (metric against
labeled cases per arm, with 95 % intervals).

Every run is scored on the same test cases, so each (arm, labeled count) is a seeds x cases
matrix. Intervals come from a two-level bootstrap that resamples seeds and test cases as
units (:func:`paired_bootstrap`); an arm's difference from scratch is taken cell by cell
(same seed, same labeled subset, same test case) over the seeds both arms hold. A report
is ``final`` only when every arm holds every planned seed at every labeled count;
until then it says ``partial`` and why."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medssl.atomic import atomic_path
from medssl.tasks.metrics import paired_bootstrap


def _matrix(runs: list[dict[str, Any]], seeds: list[int]) -> np.ndarray:
    """(seeds, cases) values of one arm and labeled count, rows in ``seeds`` order."""
    by_seed = {r["seed"]: r for r in runs}
    rows = []
    for s in seeds:
        r = by_seed[s]
        vals = r.get("per_case") or [r["value"]]
        rows.append([v if v is not None and math.isfinite(v) else np.nan for v in vals])
    width = max(len(row) for row in rows)
    return np.array([row + [np.nan] * (width - len(row)) for row in rows], dtype=float)


def completeness(runs: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
    """``{"status": "final" | "partial", "missing": [...]}`` against the planned grid."""
    have = {(r["arm"], r["n_labeled"], r["seed"]) for r in runs}
    missing = [f"{a} n={n} seed={s}" for n in plan["n_labeled"] for s in plan["seeds"] for a in plan["arms"]
               if (a, n, s) not in have]
    return {"status": "partial" if missing else "final", "missing": missing}


def summarize(runs: list[dict[str, Any]], n_boot: int = 2000) -> dict[str, Any]:
    arms: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        arms[arm] = {}
        for n in sorted({r["n_labeled"] for r in runs if r["arm"] == arm}):
            group = [r for r in runs if r["arm"] == arm and r["n_labeled"] == n]
            seeds = sorted(r["seed"] for r in group)
            ci = paired_bootstrap(_matrix(group, seeds), n_boot)
            arms[arm][str(n)] = {**{k: ci[k] for k in ("mean", "lo", "hi", "n_seeds", "n_cases")},
                                 "seeds": seeds, "per_seed": ci["per_seed"]}
    diffs: dict[str, dict[str, Any]] = {}
    for arm in arms:
        if arm == "scratch" or "scratch" not in arms:
            continue
        diffs[arm] = {}
        for n in arms[arm]:
            mine = [r for r in runs if r["arm"] == arm and str(r["n_labeled"]) == n]
            base = [r for r in runs if r["arm"] == "scratch" and str(r["n_labeled"]) == n]
            seeds = sorted({r["seed"] for r in mine} & {r["seed"] for r in base})
            if not seeds:
                continue
            a, b = _matrix(mine, seeds), _matrix(base, seeds)
            if a.shape != b.shape:  # runs scored on different test sets cannot be paired
                continue
            diffs[arm][n] = {**paired_bootstrap(a - b, n_boot), "seeds": seeds}
    return {"arms": arms, "difference_vs_scratch": diffs}


def _fmt(ci: dict[str, Any], scale: float = 100.0) -> str:
    if not ci or not ci.get("n_seeds"):
        return "n/a"
    if not math.isfinite(ci.get("lo", float("nan"))):
        return f"{scale * ci['mean']:.1f} (no interval: one seed, one case)"
    return f"{scale * ci['mean']:.1f} [{scale * ci['lo']:.1f}, {scale * ci['hi']:.1f}]"


def _fmt_diff(ci: dict[str, Any]) -> str:
    text = _fmt(ci)
    if ci and ci.get("n_seeds") and math.isfinite(ci.get("lo", float("nan"))) and not ci.get("significant"):
        text += " not significant"
    return text


def write_markdown(report: dict[str, Any], path: Path) -> None:
    metric = report["metric"]
    arms = report["arms"]
    diffs = report["difference_vs_scratch"]
    ns = sorted({int(n) for a in arms.values() for n in a})
    status = report.get("completeness", {}).get("status", "final")
    lines = [f"# Label-efficiency sweep: {metric} x100, mean [95 % interval]", ""]
    if status != "final":
        missing = report["completeness"]["missing"]
        lines += [f"**PARTIAL**: {len(missing)} planned runs missing ({', '.join(missing[:6])}"
                  f"{', ...' if len(missing) > 6 else ''}); differences use only the seeds both arms hold.", ""]
    lines += ["| labeled cases | " + " | ".join(arms) + " | " + " | ".join(f"{a} - scratch" for a in diffs) + " |"]
    lines += ["|---" * (1 + len(arms) + len(diffs)) + "|"]
    for n in ns:
        cells = [_fmt(arms[a].get(str(n), {})) for a in arms]
        cells += [_fmt_diff(d.get(str(n), {})) for d in diffs.values()]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    for arm, cells in diffs.items():
        for n, d in sorted(cells.items(), key=lambda kv: int(kv[0])):
            per_seed = ", ".join(f"{100 * v:+.1f}" for v in d["per_seed"])
            lines.append(f"- {arm} - scratch at n={n}: per seed ({', '.join(map(str, d['seeds']))}): {per_seed}; "
                         f"{d['n_cases']} test cases")
    probe = report.get("probe")
    if probe:
        lines += ["", "Frozen-feature segmentation probe (linear head on multi-scale encoder features, "
                  f"{probe.get('n_train', '?')} labeled cases, mean Dice x100 on the test cases):", ""]
        for name, res in probe.get("encoders", {}).items():
            lines.append(f"- {name}: {100 * res['mean_dice']:.1f}")
    lines += ["", "Intervals: two-level bootstrap resampling seeds and test cases as units; differences are "
              "paired by seed, labeled subset and test case. 'not significant': the interval includes 0."]
    for key, value in (report.get("meta") or {}).items():
        lines.append(f"- {key}: {value}")
    with atomic_path(path, ".md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


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
        ax.fill_between(ns, np.where(np.isfinite(lo), lo, mean), np.where(np.isfinite(hi), hi, mean), alpha=0.2)
    ax.set_xticks(sorted({int(n) for cells in report["arms"].values() for n in cells}))
    ax.set_xlabel("labeled training cases")
    ax.set_ylabel(report["metric"])
    status = report.get("completeness", {}).get("status", "final")
    ax.set_title("label efficiency (95 % interval)" + (" - PARTIAL" if status != "final" else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def write_sweep_report(runs: list[dict[str, Any]], out: Path, *, metric: str = "dice", n_boot: int = 2000,
                       plan: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write report.json / .md / plot.png; ``plan`` ({"n_labeled", "seeds", "arms"}) decides
    final vs partial (without one the runs given are taken as the plan)."""
    plan = plan or {"n_labeled": sorted({r["n_labeled"] for r in runs}), "seeds": sorted({r["seed"] for r in runs}),
                    "arms": list(dict.fromkeys(r["arm"] for r in runs))}
    report = {"metric": metric, "completeness": completeness(runs, plan), "plan": plan, **summarize(runs, n_boot),
              "runs": runs, "meta": meta or {}, **(extra or {})}
    with atomic_path(out / "report.json", ".json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    write_markdown(report, out / "report.md")
    write_plot(report, out / "plot.png")
    return report
