"""`medssl finetune / evaluate / sweep / export-bundle / probe / weights inspect` end to end
on tiny phantoms (32^3) and, marked realdata, on the real lung and brain scans."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medssl.cli import main
from medssl.data.phantom_io import synth_cohort
from medssl.models import ENCODERS

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "finetune"
FAST = ["train.max_steps=12", "train.val_every=6", "train.log_every=6"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    synth_cohort(root, 10, fmt="nifti", shape=(32, 32, 32), seed=0)
    return root


def _release_file(path: Path, rename: bool = False) -> Path:
    enc = ENCODERS.build("swin", in_channels=1, feature_size=12)
    sd = {"module." + k.replace("mlp.linear1", "mlp.fc1").replace("mlp.linear2", "mlp.fc2"): v
          for k, v in enc.state_dict().items()}
    if rename:
        sd = {k.replace("layers", "blocks_stage").replace("patch_embed", "stem"): v for k, v in sd.items()}
    sd.update({"module.rotation_head.weight": torch.zeros(4, 96), "module.contrastive_head.weight": torch.zeros(8, 192),
               "module.convTrans3d.weight": torch.zeros(192, 1, 1, 1, 1), "module.norm.weight": torch.zeros(192)})
    torch.save({"state_dict": sd}, path)
    return path


def test_weights_inspect_release_layout_and_wrong_names(tmp_path, capsys):
    good = _release_file(tmp_path / "model_swinvit.pt")
    assert main(["weights", "inspect", str(good), "--encoder", "swin", "--feature-size", "12", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["loaded"] == report["total"] == 126 and report["ok"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    bad = _release_file(tmp_path / "renamed.pt", rename=True)
    assert main(["weights", "inspect", str(bad), "--encoder", "swin", "--feature-size", "12", "--json"]) == 5
    out = capsys.readouterr()
    assert json.loads(out.out)["loaded"] < 10 and "Traceback" not in out.err
    assert "would load" in out.err and len(out.err.strip().splitlines()) == 1
    assert main(["weights", "inspect", str(tmp_path / "absent.pt")]) == 5


def test_finetune_artifact_predict_evaluate_bundle(phantoms, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["finetune", "--config", str(CONFIGS / "smoke_seg.yaml"), "--out", str(run), f"data.root={phantoms}",
               *FAST, "--export-bundle", str(tmp_path / "bundle"),
               "data.label_codes={liver: {type: 'SCT:10200004:Liver'}}"])
    assert rc == 0 and "best validation dice" in capsys.readouterr().out
    from medssl.artifacts.model import load_model_artifact

    art = load_model_artifact(run)
    assert type(art.build()).__name__ == "SwinUNETR"
    assert art.labels["1"] == "liver" and art.inference.roi_size == (32, 32, 32)
    assert art.preprocessing.intensity == "ct_window" and art.meta["data_hash"]
    assert art.meta["label_codes"]["liver"]["type"] == ["10200004", "SCT", "Liver"]  # what the SEG writer reads
    domain = art.meta["training_domain"]  # what predict compares each case with
    assert domain["modality"] == "CT" and domain["n_cases"] >= 1 and "liver" in domain["label_volume_ml"]
    from medssl.inference.predictor import Predictor
    from medssl.io import read_scan

    scan = read_scan(phantoms / "nifti" / "phantom_003.nii.gz")
    pred = Predictor.from_artifact(run, device="cpu").predict(scan)
    assert pred.label.shape == scan.shape and pred.label.max() <= 3
    assert (tmp_path / "bundle" / "configs" / "inference.json").is_file()
    assert (tmp_path / "bundle" / "models" / "model.pt").is_file()
    assert main(["evaluate", "--model", str(run), "--data", str(phantoms), "--out", str(tmp_path / "ev.json")]) == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["n_cases"] == 10 and 0.0 <= ev["summary"]["dice"]["mean"] <= 1.0
    assert set(ev["per_case"][0]) >= {"dice", "hd95", "surface_dice"}
    # evaluate predicts through the Predictor; it agrees with MONAI's plain sliding window over
    # the same weights and grid (what validation during training uses)
    import torch

    from medssl.data.labeled import prepare_case
    from medssl.evaluation.evaluate import cases_for
    from medssl.tasks.kinds import task_kind
    from medssl.training.finetune_config import FinetuneConfig

    cfg = FinetuneConfig.model_validate(art.meta["config"])
    cases = [prepare_case(c, cfg, art.labels) for c in cases_for(phantoms)]
    plain = task_kind("segmentation").score(art.build(), cases, art.labels, art.inference, torch.device("cpu"),
                                            distances=False, n_boot=10)
    own = {r["case"]: r["mean_dice"] for r in plain["per_case"]}
    again = {r["case"]: r["mean_dice"] for r in ev["per_case"]}
    assert again.keys() == own.keys()
    assert all(abs(again[c] - own[c]) < 1e-3 for c in own), (own, again)
    # re-running the same command resumes the finished run instead of retraining
    assert main(["finetune", "--config", str(CONFIGS / "smoke_seg.yaml"), "--out", str(run),
                 f"data.root={phantoms}", *FAST]) == 0


def test_classification_through_csv(phantoms, tmp_path, capsys):
    rows = ["image,class"]
    for img in sorted((phantoms / "nifti").glob("phantom_*[0-9].nii.gz")):
        lesion = int((np.asarray(nib.load(str(img).replace(".nii.gz", "_label.nii.gz")).dataobj) == 6).sum())
        rows.append(f"nifti/{img.name},{'high_burden' if lesion >= 12 else 'low_burden'}")
    (phantoms / "classes.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "cls"
    rc = main(["finetune", "--config", str(CONFIGS / "smoke_cls.yaml"), "--out", str(run),
               f"data.root={phantoms / 'classes.csv'}", "data.class_from_label=null", "model.layer_decay=0.8", *FAST])
    assert rc == 0 and "balanced_accuracy" in capsys.readouterr().out
    from medssl.artifacts.model import load_model_artifact

    art = load_model_artifact(run)
    assert art.task == "classification" and art.labels == {"0": "low_burden", "1": "high_burden"}
    assert main(["evaluate", "--model", str(run), "--data", str(phantoms / "classes.csv")]) == 0
    assert "balanced_accuracy" in capsys.readouterr().out


# a 3-stage CNN U-Net with layer-wise LR decay: encoder stage d (0 = deepest) at lr * 0.1 * 0.5 ** (d + 1)
LAYER_DECAY = ["model.network=cnn_unet", "model.encoder={name: cnn, channels: [4, 8, 16]}", "model.kwargs={}",
               "model.layer_decay=0.5", "train.encoder_lr_mult=0.1", "train.lr=0.01",
               "train.crop_size=[16,16,16]", "train.warmup_steps=2", "train.min_lr_ratio=0"]


def _with_hook(monkeypatch, hook) -> None:
    """Add ``hook`` to the hooks ``run_finetune`` gives the shared trainer (fails if it is not used)."""
    from medssl.training import finetune_run

    real_fit = finetune_run.fit

    def fit(*args, hooks=(), **kwargs):
        return real_fit(*args, hooks=[*hooks, hook], **kwargs)

    monkeypatch.setattr(finetune_run, "fit", fit)


def test_layer_decay_goes_through_the_shared_trainer(phantoms, tmp_path, monkeypatch):
    lrs: dict[int, dict[str, float]] = {}

    def record(state):
        net = state.task.network
        where = {id(p): "head" for p in net.parameters()}
        where.update({id(p): f"stage{i}" for i, s in enumerate(net.encoder.stages) for p in s.parameters()})
        lrs[state.step] = {where[id(p)]: g["lr"] for g in state.optimizer.param_groups for p in g["params"]}

    _with_hook(monkeypatch, record)
    assert main(["finetune", "--config", str(CONFIGS / "smoke_seg.yaml"), "--out", str(tmp_path / "run"),
                 f"data.root={phantoms}", *LAYER_DECAY, "train.max_steps=6", "train.val_every=6"]) == 0
    base = {"head": 0.01, "stage2": 0.01 * 0.1 * 0.5, "stage1": 0.01 * 0.1 * 0.25, "stage0": 0.01 * 0.1 * 0.125}
    assert lrs[2] == pytest.approx(base)  # warm-up done: the peak rates
    assert lrs[4] == pytest.approx({k: v * 0.5 for k, v in base.items()})  # half-way down the cosine to 0
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run" / "best.pt").is_file()


def test_layer_decay_run_killed_and_rerun_ends_like_an_uninterrupted_one(phantoms, tmp_path, monkeypatch):
    from medssl.artifacts.model import load_model_artifact
    from medssl.training.checkpoint import checkpoint_paths, read_checkpoint

    def args(run: Path) -> list[str]:
        return ["finetune", "--config", str(CONFIGS / "smoke_seg.yaml"), "--out", str(run), f"data.root={phantoms}",
                *LAYER_DECAY, "train.max_steps=8", "train.checkpoint_every=4", "train.val_every=4"]

    assert main(args(tmp_path / "full")) == 0

    def crash(state):
        if state.step == 6:
            raise KeyboardInterrupt  # killed after the step-4 checkpoint

    _with_hook(monkeypatch, crash)
    assert main(args(tmp_path / "resumed")) == 130
    assert not (tmp_path / "resumed" / "model.pt").exists()
    monkeypatch.undo()
    steps: list[int] = []
    _with_hook(monkeypatch, lambda state: steps.append(state.step))
    assert main(args(tmp_path / "resumed")) == 0  # the same command again
    assert steps == [5, 6, 7, 8]  # went on from the step-4 checkpoint
    full, resumed = (read_checkpoint(checkpoint_paths(tmp_path / r)[0]) for r in ("full", "resumed"))
    assert full["step"] == resumed["step"] == 8
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    best_full, best_resumed = (load_model_artifact(tmp_path / r) for r in ("full", "resumed"))
    assert best_full.meta["best_step"] == best_resumed.meta["best_step"]
    for k, v in best_full.state_dict.items():
        assert torch.equal(v, best_resumed.state_dict[k]), k


def test_best_pt_that_does_not_fit_is_exit_5_in_one_line_and_restart_sets_it_aside(phantoms, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["finetune", "--config", str(CONFIGS / "smoke_seg.yaml"), "--out", str(run), f"data.root={phantoms}",
            *LAYER_DECAY, "train.checkpoint_every=2", "train.val_every=2", "train.log_every=2"]
    assert main([*args, "train.max_steps=2"]) == 0
    torch.save({"state_dict": {"w": torch.zeros(3)}, "metric": 1.0, "step": 2}, run / "best.pt")  # loads, fits nothing
    capsys.readouterr()
    assert main([*args, "train.max_steps=4"]) == 5
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("medssl: error [checkpoint_mismatch]: ") and str(run / "best.pt") in line
    assert "state dict does not match the model" in line and "--restart" in line
    assert main([*args, "train.max_steps=4", "--restart"]) == 0
    assert (run / "checkpoints" / "unreadable" / "best.pt").is_file() and (run / "model.pt").is_file()


def test_sweep_pretrains_then_compares_arms(phantoms, tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(["sweep", "--config", str(CONFIGS / "smoke_sweep.yaml"), "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["completeness"]["status"] == "final"
    assert set(report["arms"]) == {"scratch", "pretrained"} and report["metric"] == "dice"
    for arm in report["arms"].values():
        assert set(arm) == {"1", "2"} and all(cell["seeds"] == [0, 1] for cell in arm.values())
    assert len(report["runs"]) == 8 and "2" in report["difference_vs_scratch"]["pretrained"]
    assert all(r["test_cases"] == report["runs"][0]["test_cases"] for r in report["runs"])  # same test set
    splits = json.loads((out / "splits.json").read_text())
    held = set(splits["test"]) | set(splits["val"])
    assert splits["pretraining"]["used"] == 6 and not held & set(splits["pretraining"]["excluded_as_held_out"])
    md = (out / "report.md").read_text()
    assert md.startswith("# Label-efficiency sweep") and "per seed (0, 1)" in md
    assert "random" in report["probe"]["encoders"] and "pretrained" in report["probe"]["encoders"]
    assert (out / "plot.png").stat().st_size > 1000
    loaded = json.loads((out / "runs" / "pretrained_n2_seed0" / "load_report.json").read_text())
    assert loaded["loaded"] == loaded["total"] > 0 and loaded["decoder"]["loaded"] == loaded["decoder"]["total"] > 0
    # the sweep's own pretraining used the fine-tune's preprocessing (ct_window -200..300)
    assert loaded["preprocess_check"] == {"checked": True, "match": True, "differences": {}}
    ranks = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ranks if "ssl/rank_0" in r] == [6, 12]
    assert "collapse" in torch.load(out / "pretrain" / "encoder.pt", weights_only=True)
    assert "| 2 |" in capsys.readouterr().out
    # the frozen-feature probe scores the same checkpoint against random init
    rc = main(["probe", "--config", str(CONFIGS / "smoke_cls.yaml"), "--pretrained", str(out / "pretrain" / "encoder.pt"),
               "--json", f"data.root={phantoms}", "model.encoder.channels=[4,8,16,32]"])
    probe = json.loads(capsys.readouterr().out)
    assert rc == 0 and probe["n_cases"] == 10 and 0.0 <= probe["knn_balanced_accuracy"] <= 1.0
    assert probe["pretrained"]["loaded"] == probe["pretrained"]["total"]
    # the same runs again, two processes at once: same cases, same report shape, close values
    par = tmp_path / "parallel"
    rc = main(["sweep", "--config", str(CONFIGS / "smoke_sweep.yaml"), "--out", str(par), "sweep.parallel=2",
               f"sweep.pretrained={out / 'pretrain' / 'encoder.pt'}", "sweep.n_labeled=[1]", "sweep.probe=false"])
    assert rc == 0
    preport = json.loads((par / "report.json").read_text())
    assert preport["completeness"]["status"] == "final" and "2 runs at once" in preport["meta"]["parallel"]
    serial = {(r["arm"], r["seed"]): r for r in report["runs"] if r["n_labeled"] == 1}
    assert len(preport["runs"]) == len(serial) == 4
    for r in preport["runs"]:
        twin = serial[(r["arm"], r["seed"])]
        assert r["train_cases"] == twin["train_cases"] and r["test_cases"] == twin["test_cases"]
        assert r["value"] == pytest.approx(twin["value"], abs=0.1)  # thread counts differ: float order too


@pytest.mark.realdata
@pytest.mark.parametrize("modality,train,test,window", [
    ("CT", "ct/lung1", "ct/lung2", ["data.preprocessing.intensity=ct_window", "data.preprocessing.ct_window.a_min=-1000",
                                    "data.preprocessing.ct_window.a_max=400"]),
    ("MR", "mr/brain1", "mr/brain2", ["data.preprocessing.intensity=mr_percentile"]),
])
def test_real_scans_finetune_then_evaluate(real_data, tmp_path, capsys, modality, train, test, window):
    csv = tmp_path / "train.csv"
    csv.write_text(f"image,label\n{real_data / train}.nii.gz,{real_data / train}_label.nii.gz\n")
    run = tmp_path / "run"
    rc = main(["finetune", "--config", str(CONFIGS / "smoke_seg.yaml"), "--out", str(run), f"data.root={csv}",
               f"data.modality={modality}", "data.labels={'0': background, '1': lesion}", "data.label_map=null",
               "data.val_fraction=0", "data.preprocessing.spacing=[3.0,3.0,4.0]", *window,
               "model.network=cnn_unet", "model.encoder={name: cnn, channels: [8, 16, 32]}", "model.kwargs={}",
               "train.pos_fraction=0.9", "train.max_steps=10", "train.val_every=5"])
    assert rc == 0
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(run), "--data", f"{real_data / test}.nii.gz", "--out", str(report)]) == 0
    ev = json.loads(report.read_text())
    assert ev["n_cases"] == 1 and 0.0 <= ev["per_case"][0]["dice"]["lesion"] <= 1.0
    assert "lesion: dice" in capsys.readouterr().out


def test_pseudonymized_case_ids_keep_the_split_and_leave_no_file_name(phantoms, tmp_path):
    from medssl.data.datalist import load_cases, load_datalist, pseudonymized, split_cases

    plain = load_datalist(phantoms)
    hashed = pseudonymized(plain)
    assert all(c.case_id.startswith("case-") for c in hashed)
    a, b = split_cases(plain, seed=3, val_fraction=0.2, n_test=2), split_cases(hashed, seed=3, val_fraction=0.2, n_test=2)
    for part in ("train", "val", "test"):
        assert [c.image for c in getattr(a, part)] == [c.image for c in getattr(b, part)]
    run = tmp_path / "run"
    rc = main(["finetune", "--config", str(CONFIGS / "smoke_seg.yaml"), "--out", str(run), f"data.root={phantoms}",
               "data.pseudonymize=true", "data.n_test=2", *FAST])
    assert rc == 0
    from medssl.artifacts.model import load_model_artifact

    meta = load_model_artifact(run).meta
    assert meta["train_cases"] and all(c.startswith("case-") for c in meta["train_cases"] + meta["test_cases"])
    for f in run.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".yaml", ".pt"):
            assert b"phantom_0" not in f.read_bytes(), f.name
    from medssl.training.finetune_config import FinetuneConfig

    cfg = FinetuneConfig.model_validate({"data": {"root": str(phantoms), "pseudonymize": True}})
    assert [c.case_id for c in load_cases(cfg.data)] == [c.case_id for c in hashed]
