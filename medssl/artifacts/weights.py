"""Load pretrained encoder weights with a report, never silently partial.

Sources understood (all read with ``torch.load(weights_only=True)``):

- medssl exported encoders ``{"format": "medssl.encoder", "encoder": {...}, "state_dict"}``;
- medssl pretrain checkpoints (a dict holding the model's state dict under ``model`` /
  ``state_dict``; the encoder's keys are found inside it);
- the public SwinUNETR SSL release layout (``model_swinvit.pt``: ``state_dict`` with
  ``module.`` keys, ``mlp.fc1/fc2`` names, rotation/contrastive/reconstruction heads);
- plain or MONAI-bundle state dicts (``models/model.pt``), e.g. a whole SwinUNETR;
- the MONAI tutorial SSL checkpoint (``{"model": {"encoder.layers1.0.0.blocks...": ...},
  "optimizer", "epoch"}``: its Swin stages sit one ``Sequential`` deeper, ``layersN.0.0.``,
  and it carries a ``mask_token``).

Keys are mapped explicitly: ``module.`` stripped, ``mlp.fc1/fc2`` -> ``mlp.linear1/linear2``,
``layersN.0.0.`` -> ``layersN.0.``, known SSL heads and mask tokens ignored, then one prefix alignment (strip a source prefix such as
``swinViT.`` / ``encoder.``, add the target's) chosen by the number of keys it matches.
Below ``min_fraction`` of the encoder's tensors loaded, :class:`CheckpointError` is raised
with the counts. A first layer whose input channels differ is adapted with a notice.
``check_preprocess`` compares the preprocessing a medssl file was pretrained with against
the fine-tune's and warns when they differ (the encoder would see other intensities)."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from medssl.data.preprocess import PreprocessConfig, intensity_mode
from medssl.errors import CheckpointError

log = logging.getLogger("medssl.weights")

# Top-level modules of the SwinUNETR SSL pretraining head (research-contributions SSLHead).
SSL_HEAD_PREFIXES = ("rotation_head.", "contrastive_head.", "convTrans3d.")
RELEASE_HEAD_PREFIXES = SSL_HEAD_PREFIXES + ("conv.", "norm.")  # only in the release layout
# Attribute names under which a whole network keeps its encoder, tried in order.
ENCODER_ATTRS = ("swinViT", "encoder")
STATE_DICT_KEYS = ("state_dict", "model", "network", "model_state_dict", "encoder_state_dict", "net")
_RENAMES = ((re.compile(r"\.mlp\.fc1\."), ".mlp.linear1."), (re.compile(r"\.mlp\.fc2\."), ".mlp.linear2."),
            (re.compile(r"\.(layers\d+)\.0\.0\."), r".\1.0."))  # MONAI tutorial SSL checkpoint nesting
_TUTORIAL_NESTING = re.compile(r"(^|\.)layers\d+\.0\.0\.")
MASK_TOKEN = "mask_token"  # masked-image pretraining's learned token: not part of the encoder downstream


@dataclass
class LoadReport:
    loaded: int
    total: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)  # key, source, target shapes
    adapted: list[str] = field(default_factory=list)  # first layers adapted to new in_channels
    ignored: list[str] = field(default_factory=list)  # known SSL heads, not needed downstream
    source_format: str = "plain"
    mapping: dict[str, str] = field(default_factory=dict)  # "strip" / "add" prefixes applied

    @property
    def fraction(self) -> float:
        return self.loaded / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": round(self.fraction, 4)}

    def summary(self) -> str:
        return (
            f"loaded {self.loaded}/{self.total} encoder tensors ({100 * self.fraction:.1f}%) from a "
            f"{self.source_format} file; {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.mismatched)} shape-mismatched, {len(self.adapted)} adapted, "
            f"{len(self.ignored)} SSL-head ignored"
        )


@dataclass
class WeightsFile:
    """A weights file read once (``open_weights``), so a fine-tune that loads its encoder,
    its decoder and checks its preprocessing reads the file one time, not three."""

    name: str
    obj: Any = None
    error: Exception | None = None


def open_weights(source: str | Path | WeightsFile) -> WeightsFile:
    """Read ``source`` (a file, or a folder holding one) with ``weights_only=True``; a read
    failure is kept in ``error`` for the caller to report."""
    if isinstance(source, WeightsFile):
        return source
    path = Path(source)
    if path.is_dir():
        path = _weights_in_folder(path)
    try:
        return WeightsFile(path.name, torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
        return WeightsFile(path.name, error=err)


def read_weights(source: str | Path | WeightsFile) -> tuple[dict[str, Tensor], str]:
    """The tensors in a weights file and the name of its layout."""
    wf = open_weights(source)
    if wf.error is not None:
        raise CheckpointError(
            f"cannot be read as a weights file ({wf.error.__class__.__name__}); only tensors and plain "
            "containers are accepted (weights_only=True)",
            source=wf.name,
        ) from wf.error
    return _find_state_dict(wf.obj, wf.name)


def _weights_in_folder(folder: Path) -> Path:
    for rel in ("encoder.pt", "model.pt", "models/model.pt", "checkpoint.pt", "last.pt", "checkpoints/last.pt"):
        if (folder / rel).is_file():
            return folder / rel
    found = sorted(folder.glob("**/*.pt"))
    if not found:
        raise CheckpointError("no .pt weights file in this folder", source=folder.name)
    return found[-1]


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _find_state_dict(obj: Any, name: str) -> tuple[dict[str, Tensor], str]:
    if _is_state_dict(obj):
        fmt = "monai_bundle" if any(k.startswith("swinViT.") for k in obj) else "plain"
        return dict(obj), fmt
    if isinstance(obj, dict):
        fmt = str(obj.get("format", ""))
        for key in STATE_DICT_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner):
                if fmt.startswith("medssl."):
                    return dict(inner), fmt
                if any(k.startswith("module.") for k in inner):
                    return dict(inner), "swinvit_release"
                if any(_TUTORIAL_NESTING.search(k) for k in inner):
                    return dict(inner), "monai_tutorial"
                return dict(inner), "checkpoint"
    raise CheckpointError(
        f"no state dict found (looked for a tensor dict at top level or under {', '.join(STATE_DICT_KEYS)})",
        source=name,
    )


def normalize_keys(sd: dict[str, Tensor], source_format: str = "plain") -> tuple[dict[str, Tensor], list[str]]:
    """Strip ``module.``, rename release names; split off known SSL head tensors."""
    heads = RELEASE_HEAD_PREFIXES if source_format == "swinvit_release" else SSL_HEAD_PREFIXES
    out: dict[str, Tensor] = {}
    ignored: list[str] = []
    for key, value in sd.items():
        new = key.removeprefix("module.")
        if new.startswith(heads) or new.rsplit(".", 1)[-1] == MASK_TOKEN:
            ignored.append(key)
            continue
        for pattern, repl in _RENAMES:
            new = pattern.sub(repl, "." + new)[1:]
        out[new] = value
    return out, ignored


def encoder_scope(module: nn.Module) -> str:
    """State-dict prefix of the encoder inside ``module`` ('' when it is the encoder)."""
    for attr in ENCODER_ATTRS:
        if isinstance(getattr(module, attr, None), nn.Module):
            return attr + "."
    return ""


def _align(source: list[str], target: list[str]) -> tuple[str, str]:
    """Choose (strip, add): source key k maps to add + k[len(strip):]; most matches wins."""
    votes: Counter[tuple[str, str]] = Counter()
    by_tail: dict[str, list[str]] = {}
    for t in target:
        by_tail.setdefault(".".join(t.split(".")[-3:]), []).append(t)
    for s in source:
        for t in by_tail.get(".".join(s.split(".")[-3:]), []):
            if t == s:
                votes[("", "")] += 1
            elif t.endswith("." + s):
                votes[("", t[: -len(s)])] += 1
            elif s.endswith("." + t):
                votes[(s[: -len(t)], "")] += 1
    if not votes:
        return "", ""
    best = max(votes.items(), key=lambda kv: (kv[1], -len(kv[0][0]) - len(kv[0][1])))[0]
    return best


def _adapt_first_layer(src: Tensor, dst_shape: torch.Size) -> Tensor | None:
    """Repeat/average a conv kernel over input channels: (O, Ci, k...) -> (O, Co, k...)."""
    if src.dim() < 3 or src.dim() != len(dst_shape) or src.shape[0] != dst_shape[0] or src.shape[2:] != dst_shape[2:]:
        return None
    c_out = dst_shape[1]
    return src.sum(dim=1, keepdim=True).repeat(1, c_out, *([1] * (src.dim() - 2))) / c_out


def plan_load(module: nn.Module, sd: dict[str, Tensor], source_format: str = "plain") -> tuple[LoadReport, dict]:
    """Map ``sd`` onto ``module``'s encoder; returns the report and the tensors to load."""
    scope = encoder_scope(module)
    target_sd = module.state_dict()
    enc_keys = [k for k in target_sd if k.startswith(scope)]
    rel_target = [k[len(scope) :] for k in enc_keys]
    normalized, ignored = normalize_keys(sd, source_format)
    strip, add = _align(list(normalized), rel_target)
    report = LoadReport(loaded=0, total=len(enc_keys), ignored=ignored, source_format=source_format)
    report.mapping = {"strip": strip, "add": scope + add}
    first_conv = next((k for k in enc_keys if k.endswith("weight") and target_sd[k].dim() == 5), None)
    to_load: dict[str, Tensor] = {}
    for key, value in normalized.items():
        if not key.startswith(strip) or scope + add + key[len(strip) :] not in target_sd:
            report.unexpected.append(key)
            continue
        tkey = scope + add + key[len(strip) :]
        want = target_sd[tkey].shape
        if value.shape != want:
            adapted = _adapt_first_layer(value, want) if tkey == first_conv else None
            if adapted is None:
                report.mismatched.append({"key": tkey, "source": list(value.shape), "target": list(want)})
                continue
            report.adapted.append(tkey)
            value = adapted
        to_load[tkey] = value.to(target_sd[tkey].dtype)
    report.loaded = len(to_load)
    report.missing = [k for k in enc_keys if k not in to_load]
    return report, to_load


def load_pretrained(
    module: nn.Module,
    path: str | Path | WeightsFile,
    encoder: str = "swin",
    min_fraction: float = 0.9,
    apply: bool = True,
) -> LoadReport:
    """Load the encoder part of ``path`` into ``module`` (a network or an encoder).

    Raises CheckpointError when fewer than ``min_fraction`` of the encoder's tensors would
    load; the model is left untouched then. ``apply=False`` only reports (``weights inspect``)."""
    wf = open_weights(path)
    sd, fmt = read_weights(wf)
    report, to_load = plan_load(module, sd, fmt)
    name = wf.name
    if report.total == 0:
        raise CheckpointError(f"the target {encoder} encoder has no tensors", source=name)
    if report.fraction < min_fraction:
        raise CheckpointError(
            f"only {report.loaded} of {report.total} {encoder} encoder tensors would load "
            f"({100 * report.fraction:.1f}% < {100 * min_fraction:.0f}%): {len(report.unexpected)} unexpected keys "
            f"(e.g. {', '.join(report.unexpected[:3]) or '-'}), {len(report.mismatched)} shape mismatches; "
            "check --encoder / feature size / in_channels, or lower the minimum fraction",
            source=name,
        )
    for key in report.adapted:
        log.warning("%s: first layer %s adapted to %s input channels (weights averaged and repeated)",
                    name, key, module.state_dict()[key].shape[1])
    if apply:
        state = module.state_dict()
        state.update(to_load)
        module.load_state_dict(state, strict=True)
        log.info("%s: %s", name, report.summary())
    return report


def _load_or_none(source: str | Path | WeightsFile) -> Any:
    """The file's object, or None when it cannot be read (read_weights reports that)."""
    return open_weights(source).obj


def exported_encoder_spec(path: str | Path | WeightsFile) -> dict[str, Any] | None:
    """The ``{"name", **kwargs}`` stored in a medssl exported encoder file, else None."""
    obj = _load_or_none(path)
    spec = obj.get("encoder") if isinstance(obj, dict) and obj.get("format") == "medssl.encoder" else None
    return dict(spec) if isinstance(spec, dict) and "name" in spec else None


def stored_preprocess(path: str | Path | WeightsFile) -> dict[str, Any] | None:
    """The preprocessing recorded in a medssl file: ``config.data.preprocessing`` (exported
    encoder, pretrain checkpoint, fine-tune config) or a model artifact's ``preprocessing``."""
    obj = _load_or_none(path)
    if not isinstance(obj, dict):
        return None
    data = obj.get("config", {}).get("data", {}) if isinstance(obj.get("config"), dict) else {}
    found = data.get("preprocessing", obj.get("preprocessing"))
    return dict(found) if isinstance(found, dict) else None


def _flat(cfg: PreprocessConfig, modality: str) -> dict[str, Any]:
    """The settings that shape what the encoder sees, with intensity resolved for ``modality``."""
    mode = intensity_mode(cfg, modality)
    out: dict[str, Any] = {"orientation": cfg.orientation, "spacing": list(cfg.spacing) if cfg.spacing else None,
                           "intensity": mode, "crop_foreground": cfg.crop_foreground}
    sections = {"ct_window": ("ct_window", cfg.ct_window), "mr_percentile": ("mr_percentiles", cfg.mr_percentiles)}
    if mode in sections:
        name, section = sections[mode]
        out.update({f"{name}.{k}": v for k, v in section.model_dump(mode="json").items()})
    return out


def check_preprocess(path: str | Path | WeightsFile, preprocessing: PreprocessConfig, modality: str) -> dict[str, Any]:
    """``{"checked", "match", "differences": {key: {"pretrain", "finetune"}}}``; logs a WARNING
    naming the differing keys. Unchecked when the file records no preprocessing."""
    wf = open_weights(path)
    stored = stored_preprocess(wf)
    if stored is None:
        return {"checked": False, "reason": "the weights file records no preprocessing"}
    try:
        before = _flat(PreprocessConfig.model_validate(stored), modality)
    except ValueError:
        return {"checked": False, "reason": "the recorded preprocessing is not readable by this medssl"}
    after = _flat(preprocessing, modality)
    diff = {k: {"pretrain": before.get(k), "finetune": after.get(k)}
            for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}
    if diff:
        shown = "; ".join(f"{k} {v['pretrain']} vs {v['finetune']}" for k, v in diff.items())
        log.warning("%s was pretrained with other preprocessing than this fine-tuning (pretrain vs fine-tune: %s): "
                    "features may not transfer; set data.preprocessing to match the pretraining's",
                    wf.name, shown)
    return {"checked": True, "match": not diff, "differences": diff}


# Final 1x1 layers of the U-Nets: they map to classes (fine-tune) or intensities (pretraining),
# so they never transfer.
UNET_HEADS = ("head.", "out.")


def load_decoder(module: nn.Module, path: str | Path | WeightsFile, min_fraction: float = 0.9) -> LoadReport:
    """Load the pretrained U-Net decoder stored in a medssl exported encoder (``unet``) into
    ``module`` (the same U-Net layout), everything but the encoder and the final head.

    Raises CheckpointError when the file holds no decoder or fewer than ``min_fraction`` of
    the decoder's tensors match by name and shape (the model is left untouched then)."""
    wf = open_weights(path)
    name, obj = wf.name, wf.obj
    unet = obj.get("unet") if isinstance(obj, dict) else None
    if not isinstance(unet, dict) or not _is_state_dict(unet.get("state_dict")):
        raise CheckpointError("holds no pretrained decoder (pretrain with tasks.inpaint.decoder=unet, "
                              "or set model.transfer=encoder)", source=name)
    scope = encoder_scope(module)
    target = module.state_dict()
    dec_keys = [k for k in target if not k.startswith(scope) and not k.startswith(UNET_HEADS)]
    source = unet["state_dict"]
    report = LoadReport(loaded=0, total=len(dec_keys), source_format="medssl.encoder/unet")
    to_load: dict[str, Tensor] = {}
    for key in dec_keys:
        value = source.get(key)
        if value is None:
            report.missing.append(key)
        elif value.shape != target[key].shape:
            report.mismatched.append({"key": key, "source": list(value.shape), "target": list(target[key].shape)})
        else:
            to_load[key] = value.to(target[key].dtype)
    report.loaded = len(to_load)
    if report.total == 0 or report.fraction < min_fraction:
        raise CheckpointError(f"only {report.loaded} of {report.total} decoder tensors match this network "
                              f"({len(report.mismatched)} shape mismatches); the pretraining U-Net differs", source=name)
    target.update(to_load)
    module.load_state_dict(target, strict=True)
    log.info("%s: decoder %d/%d tensors loaded", name, report.loaded, report.total)
    return report
