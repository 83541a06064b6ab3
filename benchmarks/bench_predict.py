"""``medssl predict`` end to end against the plain MONAI + highdicom pipeline doing the same work.

    python benchmarks/bench_predict.py           # the real 108-slice CT series, U-Net 8-16-32-64, 7 classes
    python benchmarks/bench_predict.py --quick   # seconds: a 48 x 48 x 24 phantom DICOM series

Both sides, on the CPU in fp32, from the DICOM folder to files on disk: read the series,
orient to RAS, CT window [-1000, 1000] -> [0, 1], the same network and weights through
sliding windows (the artifact's ROI, overlap, window batch and Gaussian blending), softmax,
probabilities back to the source grid (bilinear), argmax, the mask as NIfTI, per-label
volumes (mL) and a highdicom BINARY SEG over the source slices (every label described, no
frames omitted). medssl: ``medssl predict --no-preview``. Plain: ``LoadImaged``
(PydicomReader) + ``EnsureChannelFirstd`` + ``Orientationd`` + ``ScaleIntensityRanged``,
``sliding_window_inference``, ``Invertd``, nibabel, ``highdicom.seg.Segmentation``.

Each side runs in a process of its own (``racing.Side``), as a user runs either: ``medssl
predict`` keeps freed memory for reuse process-wide (``medssl.devices.keep_freed_memory``),
which must not speed up the plain side. The first run of each is the warm-up and the
equality check. Figure ``predict_end_to_end`` (wall s of a warm case, interleaved);
``equal``: both masks, brought to the closest RAS grid, lie on the same grid and differ in
at most one voxel per million (``differing_voxels``: float32 rounding decides exact ties
between classes differently).
The series carries a planted patient-name sentinel: nothing here prints a tag value."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from racing import Side, add_common_args, emit_race, race, real_data_dir  # noqa: E402

LABELS = {str(i): ("background" if i == 0 else f"structure_{i}") for i in range(7)}


def make_artifact(path: Path, roi: tuple[int, int, int], channels: list[int]) -> Path:
    from medssl.artifacts.model import ModelArtifact, save_model_artifact
    from medssl.models import build_network

    spec = {"name": "unet", "in_channels": 1, "out_channels": len(LABELS), "channels": channels,
            "strides": [2] * (len(channels) - 1)}  # fmt: skip
    torch.manual_seed(0)
    art = ModelArtifact(task="segmentation", network=spec, state_dict=build_network(spec).state_dict(),
                        labels=LABELS, modality="CT",
                        preprocessing={"orientation": "RAS", "spacing": None, "intensity": "ct_window"},
                        inference={"roi_size": list(roi), "overlap": 0.25, "sw_batch_size": 2, "mode": "gaussian"})  # fmt: skip
    return save_model_artifact(art, path)


def medssl_run(model: Path, series: Path, out: Path):  # noqa: ANN201
    return lambda: run_medssl(model, series, out)


def plain_run(model: Path, series: Path, out: Path):  # noqa: ANN201
    plain = Plain(model)
    return lambda: plain(series, out)


def run_medssl(model: Path, series: Path, out: Path) -> Path:
    from medssl.cli import main

    shutil.rmtree(out, ignore_errors=True)
    code = main(["--quiet", "predict", "--model", str(model), "-i", str(series), "-o", str(out), "--device", "cpu",
                 "--no-preview", "--no-progress"])  # fmt: skip
    if code != 0:
        raise SystemExit(f"medssl predict exited {code}")
    return next(p for p in out.glob("*.nii.gz") if not p.name.endswith(("_uncertainty.nii.gz", "_probabilities.nii.gz")))


class Plain:
    """The plain MONAI + highdicom pipeline, built once like a user's script."""

    def __init__(self, model: Path) -> None:
        from monai import transforms as mt

        from medssl.artifacts.model import load_model_artifact

        art = load_model_artifact(model)
        self.net, self.inf = art.build(torch.device("cpu")), art.inference
        self.pre = mt.Compose([
            mt.LoadImaged("image", reader="PydicomReader", image_only=False),
            mt.EnsureChannelFirstd("image"),
            mt.Orientationd("image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            mt.ScaleIntensityRanged("image", a_min=-1000, a_max=1000, b_min=0.0, b_max=1.0, clip=True),
        ])  # fmt: skip
        self.invert = mt.Invertd("pred", transform=self.pre, orig_keys="image", nearest_interp=False)

    def __call__(self, series: Path, out: Path) -> Path:
        import nibabel as nib
        from monai.inferers import sliding_window_inference

        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        d = self.pre({"image": str(series)})
        with torch.inference_mode():
            logits = sliding_window_inference(d["image"][None], tuple(self.inf.roi_size), self.inf.sw_batch_size,
                                              self.net, overlap=self.inf.overlap, mode=self.inf.mode)  # fmt: skip
        d["pred"] = d["image"].clone().set_array(torch.softmax(logits[0], 0))
        pred = self.invert(d)["pred"]
        mask = pred.argmax(0).numpy().astype(np.uint8)
        affine = pred.affine.numpy()
        nib.save(nib.Nifti1Image(mask, affine), out / "mask.nii.gz")
        voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
        counts = np.bincount(mask.ravel(), minlength=len(LABELS))
        (out / "stats.txt").write_text("\n".join(f"{LABELS[str(i)]} {c * voxel_ml:.3f}" for i, c in enumerate(counts)))
        write_seg(series, mask, affine, out / "seg.dcm")
        return out / "mask.nii.gz"


def write_seg(series: Path, mask: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """highdicom BINARY SEG of ``mask`` (on ``affine``) over the series' slices, sorted by position."""
    import highdicom as hd
    import nibabel as nib
    import pydicom
    from pydicom.sr.codedict import codes

    datasets = [pydicom.dcmread(p) for p in sorted(series.iterdir()) if p.is_file()]
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float))))
    for ds in datasets:  # type 2 attributes highdicom copies; real series often lack some
        for keyword in ("PatientBirthDate", "PatientSex", "AccessionNumber", "ReferringPhysicianName", "StudyID",
                        "StudyDate", "StudyTime"):  # fmt: skip
            if keyword not in ds:
                setattr(ds, keyword, "")
    # the slice grid (columns, rows, slices) in RAS, to reorder the mask into frames exactly
    row_mm, col_mm = (float(v) for v in datasets[0].PixelSpacing)
    first, last = (np.asarray(ds.ImagePositionPatient, dtype=float) for ds in (datasets[0], datasets[-1]))
    step = (last - first) / max(1, len(datasets) - 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = iop[:3] * col_mm, iop[3:] * row_mm, step, first
    grid = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), nib.orientations.io_orientation(grid))
    frames = nib.orientations.apply_orientation(mask, ornt).transpose(2, 1, 0)  # [slices, rows, columns]
    algorithm = hd.AlgorithmIdentificationSequence(name="plain", family=codes.cid7162.ArtificialIntelligence, version="1")
    descriptions = [hd.seg.SegmentDescription(
        segment_number=i, segment_label=LABELS[str(i)], segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for i in range(1, len(LABELS))]  # fmt: skip
    seg = hd.seg.Segmentation(source_images=datasets, pixel_array=np.ascontiguousarray(frames),
                              segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                              segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=900,
                              sop_instance_uid=hd.UID(), instance_number=1, manufacturer="plain",
                              manufacturer_model_name="plain", software_versions="1", device_serial_number="0",
                              omit_empty_frames=False)  # fmt: skip
    seg.save_as(path)


def canonical_mask(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(path))
    return np.asarray(img.dataobj), img.affine


def quick_series(tmp: Path) -> Path:
    from medssl.data.phantom_io import synth_cohort

    synth_cohort(tmp / "cohort", 1, fmt="dicom", seed=0, shape=(48, 48, 24), workers=1)
    return next(p for p in sorted((tmp / "cohort" / "dicom").iterdir()) if p.is_dir())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(p)
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="medssl-bench-predict-") as tmp_name:
        tmp = Path(tmp_name)
        if args.quick:
            series, roi, channels = quick_series(tmp), (32, 32, 16), [4, 8]
        else:
            series, roi, channels = real_data_dir() / "dicom" / "head_ct_series", (96, 96, 64), [8, 16, 32, 64]
        model = make_artifact(tmp / "model.pt", roi, channels)
        # each side in its own process: medssl predict tunes the process's allocator
        medssl_proc, plain_proc = Side(medssl_run, model, series, tmp / "m"), Side(plain_run, model, series, tmp / "p")
        ours, theirs = canonical_mask(medssl_proc()), canonical_mask(plain_proc())  # also the warm-up
        same_grid = ours[0].shape == theirs[0].shape and np.allclose(ours[1], theirs[1], atol=1e-4)
        differ = int((ours[0] != theirs[0]).sum()) if same_grid else -1
        a, b = race(medssl_proc, plain_proc, repeats, warmup=0)
        medssl_proc.close(), plain_proc.close()
        voxels = int(np.prod(ours[0].shape))
        emit_race("predict_end_to_end", a, b, "s", equal=same_grid and 0 <= differ <= voxels // 10**6,
                  differing_voxels=differ,
                  shape=list(ours[0].shape), classes=len(LABELS), roi=list(roi), network=f"unet {channels}",
                  precision="fp32", threads=torch.get_num_threads())  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
