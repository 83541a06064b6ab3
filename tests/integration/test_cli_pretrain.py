"""End to end: phantom cohort -> `medssl pretrain` (smoke) -> losses fall, kill -9 + re-run
resumes exactly, torchrun with 2 CPU processes, `medssl export-encoder`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "pretrain" / "smoke.yaml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def medssl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medssl", *args], env=ENV, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    res = medssl("data", "synth", "--out", str(root / "D"), "--n", "12", "--format", "nifti")
    assert res.returncode == 0, res.stderr
    return root


def quarter_means(rows: list[dict], key: str) -> tuple[float, float]:
    values = [r[key] for r in rows]
    q = max(1, len(values) // 4)
    return sum(values[:q]) / q, sum(values[-q:]) / q


def test_smoke_pretrain_losses_fall_and_export(cohort):
    run = cohort / "run"
    res = medssl("pretrain", "--config", SMOKE, "--out", str(run), f"data.root={cohort / 'D'}",
                 f"data.cache_dir={cohort / 'cache'}")
    assert res.returncode == 0, res.stderr[-2000:]
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in logged if "loss" in r]
    assert rows[-1]["step"] == 60
    # the collapse monitor: per-stage effective rank at random init and every 30 steps
    ranks = [r for r in logged if "ssl/rank_0" in r]
    assert [r["step"] for r in ranks] == [30, 60] and all(r["ssl/rank_3"] > 0 for r in ranks)
    collapse = json.loads((run / "collapse.json").read_text())
    assert len(collapse["step0"]) == 4 and collapse["latest"]["step"] == 60
    for key in ("loss", "inpaint_l1", "contrastive"):
        first, last = quarter_means(rows, key)
        assert last < 0.8 * first, f"{key}: first quarter {first:.4f}, last quarter {last:.4f}"
    assert 0 <= rows[-1]["data_wait"] < 1 and rows[-1]["lr"] > 0
    assert (run / "checkpoints" / "ckpt_00000060.pt").is_file()
    assert (run / "config.yaml").is_file() and list((run / "previews").glob("*.png"))
    assert list((run / "tb").iterdir())

    res = medssl("export-encoder", str(run), "--out", str(cohort / "encoder.pt"))
    assert res.returncode == 0, res.stderr
    payload = torch.load(cohort / "encoder.pt", weights_only=True)
    assert payload["format"] == "medssl.encoder" and payload["format_version"] == 1
    assert payload["encoder"]["name"] == "cnn" and payload["step"] == 60
    assert payload["collapse"]["step0"] == collapse["step0"] and "unet" in payload  # the decoder, for transfer
    from medssl.models.encoders import build_encoder

    build_encoder(payload["encoder"]).load_state_dict(payload["state_dict"], strict=True)

    again = medssl("pretrain", "--config", SMOKE, "--out", str(run), f"data.root={cohort / 'D'}",
                   f"data.cache_dir={cohort / 'cache'}")  # finished run: a no-op
    assert again.returncode == 0 and len((run / "metrics.jsonl").read_text().splitlines()) == 62


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "ckpt_00000040.pt", weights_only=True)["model"]


def test_kill_9_and_rerun_resumes_exactly(cohort):
    args = ["pretrain", "--config", SMOKE, f"data.root={cohort / 'D'}", f"data.cache_dir={cohort / 'cache'}",
            "train.max_steps=40", "train.checkpoint_every=10", "train.preview_every=0",
            "train.tensorboard=false", "train.progress=false", "data.batch_size=2", "model.encoder.channels=[4,8,16,32]"]
    full, killed = cohort / "full", cohort / "killed"
    assert medssl(*args, "--out", str(full)).returncode == 0

    proc = subprocess.Popen([sys.executable, "-m", "medssl", *args, "--out", str(killed)], env=ENV, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = killed / "metrics.jsonl", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        if lines and json.loads(lines[-1])["step"] > 20:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "checkpoints" / "ckpt_00000040.pt").exists()

    res = medssl(*args, "--out", str(killed))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming from step" in res.stderr
    a, b = _final_weights(full), _final_weights(killed)
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) <= 1e-6
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 41))
    assert [r["step"] for r in rows if "ssl/rank_0" in r] == [30]


def test_torchrun_two_cpu_processes(cohort):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    run = cohort / "ddp"
    res = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "medssl", "pretrain", "--config", SMOKE,
         "--out", str(run), f"data.root={cohort / 'D'}", f"data.cache_dir={cohort / 'cache'}",
         "train.max_steps=8", "train.checkpoint_every=4", "train.preview_every=4", "data.workers=1"],
        env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "ckpt_00000008.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 9))


def _errors_and_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " WARNING " in line or line.startswith("medssl:")]


def test_resume_with_other_encoder_channels_is_exit_5_in_one_line_and_restart_sets_aside(cohort):
    run = cohort / "channels"
    args = ["pretrain", "--config", SMOKE, "--out", str(run), f"data.root={cohort / 'D'}",
            f"data.cache_dir={cohort / 'cache'}", "train.checkpoint_every=2", "train.preview_every=0",
            "train.tensorboard=false", "train.progress=false", "data.batch_size=2", "monitor.rank_every=0"]
    assert medssl(*args, "train.max_steps=2", "model.encoder.channels=[4,8,16,32]").returncode == 0
    original = (run / "config.yaml").read_text()
    res = medssl(*args, "train.max_steps=4", "model.encoder.channels=[8,8,16,32]")
    assert res.returncode == 5, res.stderr[-2000:]
    assert (run / "config.yaml").read_text() == original  # the run's own config is kept until a resume works
    [line] = _errors_and_warnings(res.stderr)
    assert line.startswith("medssl: error [checkpoint_mismatch]: ") and "ckpt_00000002.pt" in line
    assert "state dict does not match the model" in line and "shape mismatch" in line
    assert "model.encoder.channels" in line and "--restart" in line
    assert (run / "checkpoints" / "ckpt_00000002.pt").is_file()
    res = medssl(*args, "train.max_steps=4", "model.encoder.channels=[8,8,16,32]", "--restart")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (run / "checkpoints" / "unreadable" / "ckpt_00000002.pt").is_file()
    assert (run / "checkpoints" / "ckpt_00000004.pt").is_file()
    assert "- 8\n" in (run / "config.yaml").read_text().split("channels:")[1][:40]  # the new run's config


def test_all_checkpoints_unreadable_is_one_line_without_warnings(cohort):
    run = cohort / "unreadable"
    args = ["pretrain", "--config", SMOKE, "--out", str(run), f"data.root={cohort / 'D'}",
            f"data.cache_dir={cohort / 'cache'}", "train.checkpoint_every=1", "train.preview_every=0",
            "train.tensorboard=false", "train.progress=false", "data.batch_size=2", "monitor.rank_every=0",
            "model.encoder.channels=[4,8,16,32]"]
    assert medssl(*args, "train.max_steps=2").returncode == 0
    for path in (run / "checkpoints").glob("ckpt_*.pt"):
        path.write_bytes(path.read_bytes()[:500])
    res = medssl(*args, "train.max_steps=4")
    assert res.returncode == 5
    [line] = _errors_and_warnings(res.stderr)
    assert line.startswith("medssl: error [no_readable_checkpoint]: ")
    assert "ckpt_00000002.pt" in line and "ckpt_00000001.pt" in line


def test_unknown_override_is_a_config_error(cohort):
    res = medssl("pretrain", "--config", SMOKE, "--out", str(cohort / "bad"), "train.max_stepz=3")
    assert res.returncode == 4
    assert "unknown key 'train.max_stepz'" in res.stderr and "max_steps" in res.stderr
