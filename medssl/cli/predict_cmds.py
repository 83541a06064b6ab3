"""Subcommand: ``medssl predict`` (batch prediction with a model artifact)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from medssl.errors import ConfigError

log = logging.getLogger("medssl")

EPILOG = (
    "Per case: CASE.nii.gz (labels on the original grid), CASE.json (volumes in mL, HU, bounding "
    "boxes, confidence), CASE.png, CASE_seg.dcm for DICOM inputs. Per run: results.csv (one row "
    "per input: ok / failed / skipped) and run.json. Exit: 0 all ok, 6 some inputs failed, "
    "7 every input failed."
)


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="batch prediction: masks, DICOM SEG, volumes and a status row per input",
        description="Runs a model artifact over NIfTI files, DICOM folders (one case per image "
        "series), zips and manifests from `medssl data index`.", epilog=EPILOG)
    p.add_argument("--model", required=True, type=Path, help="model.pt or a fine-tune run folder holding one")
    p.add_argument("-i", "--input", required=True, nargs="+", type=Path, metavar="PATH",
                   help="NIfTI files, folders, zips or a manifest.jsonl (any mix)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto (cuda if available)")
    p.add_argument("--workers", type=int, default=2, help="threads reading and preprocessing ahead (default 2; 0 = none)")
    p.add_argument("--continue", dest="resume", action="store_true",
                   help="skip inputs already predicted with the same input and model hash")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation; writes CASE_uncertainty.nii.gz")
    p.add_argument("--save-probabilities", action="store_true", help="also write CASE_probabilities.nii.gz (X,Y,Z,K)")
    p.add_argument("--part", type=_positive_int, default=1, metavar="K", help="run only shard K of --of N (1-based; default 1)")
    p.add_argument("--of", type=_positive_int, default=1, metavar="N", help="number of shards (default 1)")
    p.add_argument("--overlap", type=float, default=None, help="sliding-window overlap in [0, 1) (default: the model's)")
    p.add_argument("--sw-batch-size", type=int, default=None, help="windows per forward pass (default: the model's)")
    p.add_argument("--allow-resample", action="store_true",
                   help="resample DICOM series with gantry tilt or uneven slice spacing onto a regular grid "
                   "(default: such inputs fail with a geometry error)")
    p.add_argument("--pseudonymize", action="store_true",
                   help="hash every case id and source path component (case-<hash>); by default only names "
                   "holding the scan's own PatientName / PatientID are hashed")
    p.add_argument("--no-dicom-seg", action="store_true", help="do not write DICOM SEG for DICOM inputs")
    p.add_argument("--keep-patient-identity", action="store_true",
                   help="copy the source series' patient and study modules (name, ID, dates, descriptions) into "
                   "CASE_seg.dcm; default: the SEG is de-identified (PS3.15 basic profile, UIDs kept)")
    p.add_argument("--no-preview", action="store_true", help="do not write CASE.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, usage_error=p.error)


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return int(text)


def _check(args: argparse.Namespace) -> None:
    if args.part > args.of:
        args.usage_error(f"--part must be between 1 and --of ({args.of}), got {args.part}")
    if args.workers < 0:
        raise ConfigError(f"--workers must be 0 or more, got {args.workers}")
    if args.overlap is not None and not 0.0 <= args.overlap < 1.0:
        raise ConfigError(f"--overlap must be in [0, 1), got {args.overlap}")


def run(args: argparse.Namespace) -> int:
    _check(args)
    if getattr(args, "debug", False):  # the messages of failed cases' internal errors
        logging.getLogger("medssl.inference").setLevel(logging.DEBUG)
    from medssl.devices import keep_freed_memory
    from medssl.inference.inputs import collect_inputs
    from medssl.inference.predictor import Predictor
    from medssl.io.path_privacy import Redactor, redacting_logs

    keep_freed_memory(default=True)  # a predict process ends with its run; see the docstring

    predictor = Predictor.from_artifact(args.model, device=args.device, overlap=args.overlap,
                                        sw_batch_size=args.sw_batch_size, tta=args.tta)  # fmt: skip
    with redacting_logs(Redactor()) as redactor:  # io modules log folder names: masked like the outputs
        return _predict(args, predictor, collect_inputs(args.input, pseudonymize=args.pseudonymize, redactor=redactor))


def _predict(args: argparse.Namespace, predictor, cases: list) -> int:
    from medssl.inference.batch import BatchOptions, run_batch

    if not cases:
        raise ConfigError("no inputs found (expected NIfTI files, DICOM folders, zips or a manifest.jsonl)")
    opts = BatchOptions(output=args.output, resume=args.resume, save_probabilities=args.save_probabilities,
                        dicom_seg=not args.no_dicom_seg, preview=not args.no_preview, workers=args.workers,
                        keep_patient_identity=args.keep_patient_identity,
                        part=args.part, of=args.of, allow_resample=args.allow_resample,
                        progress=not (args.no_progress or args.quiet), pseudonymize=args.pseudonymize)  # fmt: skip
    log.info("predict: %d input(s)%s on %s, model %s", len(cases),
             f" (part {args.part} of {args.of})" if args.of > 1 else "", predictor.device, predictor.model_hash[:12])  # fmt: skip
    summary = run_batch(predictor, cases, opts)
    c = summary.counts
    log.info("predict: %d ok, %d warning (outside what the model was trained on, see reason), %d failed, %d skipped "
             "(%d kept from an earlier run) in %.1f s; results in %s", c["ok"], c.get("warning", 0), c["failed"],
             c["skipped"], c["kept"], summary.seconds, args.output / "results.csv")  # fmt: skip
    return summary.exit_code
