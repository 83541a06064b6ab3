"""A description and worked examples for every subcommand's ``--help``, kept in one table so
the command modules stay short; ``build_parser`` applies it. A unit test checks that every
subcommand has both."""

from __future__ import annotations

import argparse

# command path -> (description used when the command has none, example lines)
EXAMPLES: dict[str, tuple[str, list[str]]] = {
    "inspect": ("", ["medssl inspect scans/ct_001.nii.gz", "medssl inspect dicom/series_folder --json"]),
    "convert": ("", ["medssl convert dicom/series_folder ct.nii.gz --canonical"]),
    "data": ("", ["medssl data synth --out phantoms --n 16 --format both",
                  "medssl data index phantoms --out manifest.jsonl"]),
    "data synth": ("", ["medssl data synth --out phantoms --n 8 --format nifti --shape 96 96 64"]),
    "data index": ("", ["medssl data index /data/ct --out manifest.jsonl --workers 4"]),
    "pretrain": ("", ["medssl pretrain --config $(medssl configs show pretrain/smoke --path) --out runs/pre "
                      "data.root=phantoms train.max_steps=200"]),
    "export-encoder": ("", ["medssl export-encoder runs/pre --out encoder.pt"]),
    "finetune": ("", ["medssl finetune --config $(medssl configs show finetune/demo_seg --path) --out runs/seg "
                      "data.root=phantoms --pretrained encoder.pt"]),
    "evaluate": ("Score a model artifact on labelled scans: Dice, HD95 and surface Dice per label for "
                 "segmentation, AUC and accuracy for classification.",
                 ["medssl evaluate --model runs/seg --data heldout --out eval.json"]),
    "sweep": ("", ["medssl sweep --config $(medssl configs show finetune/smoke_sweep --path) --out runs/sweep"]),
    "export-bundle": ("Write a model artifact (model.pt or its run folder) as a MONAI bundle folder.",
                      ["medssl export-bundle runs/seg --out bundles/seg"]),
    "weights": ("Pretrained weight files: report how one would load into an encoder before using it.",
                ["medssl weights inspect model_swinvit.pt --encoder swin_unetr --feature-size 48"]),
    "weights inspect": ("", ["medssl weights inspect model_swinvit.pt --encoder swin_unetr --json"]),
    "probe": ("Score an encoder checkpoint by a kNN / logistic probe on its frozen features (no fine-tuning); "
              "without --pretrained, a random-init baseline.",
              ["medssl probe --config $(medssl configs show finetune/smoke_cls --path) --pretrained encoder.pt"]),
    "predict": ("", ["medssl predict --model runs/seg -i scans/ dicom/study1 -o results/",
                     "medssl predict --model runs/seg -i scans/ -o results/ --continue --part 1 --of 2"]),
    "viewer": ("", ["medssl viewer --data-dir scans --results-dir results --models-dir runs",
                    "medssl viewer --host 0.0.0.0 --secrets .streamlit/secrets.toml   # OIDC login"]),
    "demo": ("", ["medssl demo --out demo_out"]),
}


def _walk(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                yield path, sub
                yield from _walk(sub, path)


def add_examples(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand of ``parser`` its examples (and a description where it lacks one)."""
    for path, sub in _walk(parser):
        description, lines = EXAMPLES.get(path, ("", []))
        if not sub.description:
            sub.description = description or None
        if lines and "example" not in (sub.epilog or "").lower():
            sub.epilog = "\n".join(["examples:", *(f"  {line}" for line in lines)])
            if sub.formatter_class is argparse.HelpFormatter:
                sub.formatter_class = argparse.RawDescriptionHelpFormatter


def subcommands(parser: argparse.ArgumentParser):
    """(command path, parser) of every subcommand, for tests."""
    return list(_walk(parser))
