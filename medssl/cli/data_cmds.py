"""Subcommands: ``medssl data synth`` (phantom cohorts), ``medssl data index`` (manifests)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from medssl.errors import EXIT_ALL_FAILED, EXIT_OK, EXIT_PARTIAL, ConfigError

log = logging.getLogger("medssl")


def register(sub) -> None:
    data = sub.add_parser("data", help="phantom cohorts and manifests of scan trees",
                          description="Phantom cohorts (synth) and manifests of scan trees (index).")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=type(data))
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])

    synth = data_sub.add_parser(
        "synth", help="write a cohort of CT-like torso phantoms (NIfTI and/or DICOM)",
        description="Writes OUT/nifti/phantom_NNN.nii.gz (+ _label.nii.gz), OUT/dicom/phantom_NNN/"
        "IM0000.dcm..., OUT/labels.json and OUT/dataset.json (MSD style). Subject i depends only "
        "on (--seed, i).")
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument("--n", type=int, default=10, help="number of subjects (default 10)")
    synth.add_argument("--format", choices=("nifti", "dicom", "both"), default="both")
    synth.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    synth.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                       help="voxels per subject (default 96 96 40..80, drawn per subject)")
    synth.add_argument("--spacing", type=float, nargs=3, metavar=("SX", "SY", "SZ"),
                       help="voxel size in mm (default drawn per subject: field of view, slice thickness)")
    synth.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    synth.add_argument("--appearance", choices=("uniform", "multiphase"), default="uniform",
                       help="multiphase: each subject in one contrast phase (native, arterial, portal, "
                       "delayed), with enhancing organs, kidney medulla and hepatic vessels (default uniform)")
    synth.add_argument("--anatomy", choices=("regular", "varied"), default="regular",
                       help="varied: the whole body deformed by a smooth random field per subject, so organ "
                       "shape, size and position vary as between patients (default regular)")
    synth.add_argument("--lesions", choices=("small", "large"), default="small",
                       help="lesion radius: small 4-15 mm, large 8-25 mm (same count, places and contrast; "
                       "default small)")
    synth.add_argument("--dose", choices=("standard", "low"), default="standard",
                       help="image noise: standard 6-22 HU, low 30-60 HU with a reconstruction kernel's grain "
                       "(same subjects; default standard)")
    synth.set_defaults(func=run_synth)

    index = data_sub.add_parser(
        "index", help="index a tree of NIfTI files, DICOM folders and zips (headers only)",
        description="Writes one JSON line per image series or volume (id, path, modality, shape, "
        "spacing, status ok|failed, code, reason, fingerprint). Re-running with the same --out "
        "re-reads only new or changed inputs.")
    index.add_argument("root", type=Path, help="folder to walk")
    index.add_argument("--out", required=True, type=Path, help="manifest file (.jsonl)")
    index.add_argument("--workers", type=int, default=1, help="processes reading headers (default 1)")
    index.add_argument("--pseudonymize", action="store_true",
                       help="write every path component as a hashed pseudonym (patient-named folders are "
                       "masked always); the real paths go to OUT.private.json beside the manifest")
    index.add_argument("--strict", action="store_true",
                       help="exit 6 when some inputs failed, 7 when all did (default: exit 0)")
    index.set_defaults(func=run_index)


def run_synth(args: argparse.Namespace) -> int:
    from medssl.data.phantom_io import synth_cohort

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    if args.shape and min(args.shape) < 8:
        raise ConfigError(f"--shape must be at least 8 voxels per axis, got {args.shape}")
    if args.spacing and min(args.spacing) <= 0:
        raise ConfigError(f"--spacing must be positive, got {args.spacing}")
    start = time.perf_counter()
    synth_cohort(args.out, args.n, fmt=args.format, seed=args.seed, shape=args.shape,
                 spacing=args.spacing, workers=max(1, args.workers), appearance=args.appearance, anatomy=args.anatomy,
                 lesions=args.lesions, dose=args.dose)
    log.info("wrote %d phantom subjects (%s) to %s in %.1f s", args.n, args.format, args.out,
             time.perf_counter() - start)
    return EXIT_OK


def run_index(args: argparse.Namespace) -> int:
    from medssl.data.manifest import update_manifest

    if not args.root.is_dir():
        raise ConfigError(f"{args.root} is not a folder")
    start = time.perf_counter()
    result = update_manifest(args.root, args.out, workers=max(1, args.workers), pseudonymize=args.pseudonymize)
    print(f"medssl data index: {result.summary()} ({time.perf_counter() - start:.1f} s) -> {args.out}",
          file=sys.stderr)
    ok, failed = result.counts.get("ok", 0), result.counts.get("failed", 0)
    if args.strict and failed:
        return EXIT_ALL_FAILED if ok == 0 else EXIT_PARTIAL
    return EXIT_OK
