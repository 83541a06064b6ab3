"""Where DICOM bytes come from: the files of a folder tree, or the members of a zip, read
from the archive when used (headers first, the chosen series' pixels later), so a big
archive costs the memory of the series read, not of the archive. Zip members are never
extracted to disk; member names are only labels, and names that would escape a folder
(``../``, absolute, drive letters) or links are refused."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from medssl.errors import CorruptFileError, LimitExceededError, NotAScanError, UnsupportedInputError
from medssl.io.limits import ReadLimits, raise_hint
from medssl.io.discovery import is_nifti

# Files that are never scans; skipped silently when walking a folder.
IGNORED_SUFFIXES = frozenset(
    ".json .jsonl .txt .md .csv .tsv .yaml .yml .xml .html .htm .py .sh .png .jpg .jpeg .gif "
    ".pdf .log .ini .cfg .toml .npy .npz .pt .pth .zip .gz .bz2 .xz .tar".split()
)


@dataclass(frozen=True)
class Member:
    """One candidate DICOM file: ``name`` is a relative, PHI-free label used in messages."""

    name: str
    size: int
    path: Path | None = None  # a file on disk
    data: bytes | None = None  # or bytes in memory
    archive: zipfile.ZipFile | None = field(default=None, compare=False, repr=False)  # or a zip member
    info: zipfile.ZipInfo | None = field(default=None, compare=False, repr=False)

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.archive is not None and self.info is not None:
            return _open_member(self.archive, self.info, self.name)
        assert self.path is not None
        return open(self.path, "rb")


def _open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> BinaryIO:
    """A seekable stream of one member; at most its declared size is ever returned."""
    try:
        return zf.open(info)  # type: ignore[return-value]
    except NotImplementedError as err:
        raise UnsupportedInputError("zip member uses an unsupported compression method", source=name) from err
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as err:
        raise CorruptFileError(f"zip member cannot be read ({err.__class__.__name__})", source=name) from err


def _is_ignored(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    if base.startswith(".") or base.lower() in {"readme", "license", "thumbs.db"}:
        return True
    return any(base.lower().endswith(s) for s in IGNORED_SUFFIXES) and not is_nifti(base)


def walk_tree(root: Path, max_depth: int, *,
              on_too_deep: str = "raise") -> Iterator[tuple[Path, list[str], list[str]]]:  # fmt: skip
    """``os.walk`` for untrusted trees: (folder, subfolder names, file names), top-down and
    sorted, hidden entries left out; iterative (a tree 1,000 levels deep is no recursion
    error), each real folder visited once (a link back up is not a loop), at most
    ``max_depth`` levels below ``root``: deeper raises LimitExceededError, or with
    ``on_too_deep="stop"`` is not walked. Removing names from the subfolder list in the loop
    body prunes them, as with ``os.walk``."""
    seen: set[tuple[int, int]] = set()
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            st = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            raise NotAScanError(f"cannot list a folder ({_os_reason(err)})", source=_rel(folder, root)) from err
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs, files = [], []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                continue  # a link that loops or dangles
            (dirs if is_dir else files).append(entry.name)
        yield folder, dirs, files
        if dirs and depth + 1 > max_depth:
            if on_too_deep == "stop":
                continue
            raise LimitExceededError(f"folders nested more than {max_depth} levels deep; point at the "
                                     f"series folder or {raise_hint('max_depth')}", source=root.name)  # fmt: skip
        stack.extend((folder / d, depth + 1) for d in reversed(dirs))


def _os_reason(err: OSError) -> str:
    return err.strerror or err.__class__.__name__


def walk_folder(
    root: Path, limits: ReadLimits, *, include_nifti: bool = False, recursive: bool = True
) -> list[Member]:
    """Files under ``root`` (sorted, hidden files and obvious non-scans left out); only the
    folder's own files when ``recursive`` is False."""
    members: list[Member] = []
    for folder, dirs, files in walk_tree(root, limits.max_depth):
        if not recursive:
            dirs[:] = []
        for name in files:
            path = folder / name
            rel = _rel(path, root)
            if _is_ignored(rel) or (is_nifti(rel) and not include_nifti):
                continue
            if len(members) >= limits.max_files:
                raise LimitExceededError(f"folder holds more than {limits.max_files} files; point at one series "
                                         f"folder or {raise_hint('max_files')}", source=root.name)  # fmt: skip
            try:
                size = path.stat().st_size
            except OSError:
                continue  # vanished or a dangling link
            members.append(Member(name=rel, size=size, path=path))
    members.sort(key=lambda m: m.name)
    return members


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else root.name


def check_member_size(member: Member, limits: ReadLimits) -> None:
    if member.size == 0:
        raise CorruptFileError("empty file (0 bytes)", source=member.name)
    if member.size > limits.max_file_bytes:
        raise LimitExceededError(
            f"file is {member.size} bytes, above the limit of {limits.max_file_bytes}",
            source=member.name,
        )


def _safe_member_name(info: zipfile.ZipInfo, archive: str) -> str:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise UnsupportedInputError(
            f"zip member name '{name[:80]}' points outside the archive; refusing the archive",
            source=archive,
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsupportedInputError(f"zip member '{name[:80]}' is a link; refusing the archive", source=archive)
    return name


def _check_zip_budget(infos: list[zipfile.ZipInfo], archive: str, limits: ReadLimits) -> None:
    if len(infos) > limits.max_zip_members:
        raise LimitExceededError(
            f"zip holds {len(infos)} members, above the limit of {limits.max_zip_members}", source=archive
        )
    total = sum(i.file_size for i in infos)
    if total > limits.max_total_bytes:
        raise LimitExceededError(
            f"zip would unpack to {total} bytes, above the limit of {limits.max_total_bytes}", source=archive
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1024 * 1024 and ratio > limits.max_ratio:
            raise LimitExceededError(
                f"zip member compresses {ratio:.0f}:1, above the limit of {limits.max_ratio:.0f}:1 "
                "(a zip bomb?)",
                source=archive,
            )
        if info.file_size > limits.max_file_bytes:
            raise LimitExceededError(f"zip member is {info.file_size} bytes, above the limit", source=archive)


def read_zip(path: Path, limits: ReadLimits) -> list[Member]:
    """Members of a zip archive, after the limits have been checked against its directory;
    each member is decompressed only when read (the archive stays open while they live)."""
    archive = path.name
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise NotAScanError(f"not a readable zip archive ({err.__class__.__name__})", source=archive) from err
    try:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        names = [_safe_member_name(i, archive) for i in infos]
        _check_zip_budget(infos, archive, limits)
    except BaseException:
        zf.close()
        raise
    return [Member(name=f"{archive}:{name}", size=info.file_size, archive=zf, info=info)
            for info, name in zip(infos, names) if not (_is_ignored(name) or name.startswith("__MACOSX/"))]
