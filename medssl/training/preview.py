"""Reconstruction previews: PNG of the mid axial slice of input, masked input and
reconstruction, written every ``train.preview_every`` steps by rank 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from medssl.atomic import atomic_path


def write_preview(volumes: dict[str, Tensor], path: Path, title: str = "") -> Path:
    """volumes: name -> (X, Y, Z) tensor; one panel per volume (mid slice along Z)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(volumes), figsize=(3 * len(volumes), 3.2), squeeze=False)
    for ax, (name, vol) in zip(axes[0], volumes.items()):
        arr = vol.detach().float().cpu().numpy()
        ax.imshow(np.rot90(arr[:, :, arr.shape[2] // 2]), cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def preview_hook(every: int):
    """A trainer hook writing RUN/previews/step_NNNNNNNN.png from the task's ``preview(batch)``."""

    def hook(state) -> None:
        if not state.info.is_main or state.step % every or not hasattr(state.task, "preview"):
            return
        with state.autocast():
            volumes = state.task.preview(state.batch)
        write_preview(volumes, state.run_dir / "previews" / f"step_{state.step:08d}.png", f"step {state.step}")

    return hook
