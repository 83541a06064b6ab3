"""``medssl configs list`` / ``medssl configs show NAME``: the experiment configs shipped with
medssl (the checkout's top-level ``configs/``; a wheel installs them as data files under
``<prefix>/share/medssl/configs``), so commands that need one work outside the checkout."""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from medssl.errors import ConfigError


def config_root() -> Path:
    """The folder holding the shipped configs: the source checkout beside the package (a
    checkout or an editable install), else the wheel's data files under the prefix."""
    import sys

    candidates = [Path(__file__).resolve().parents[2] / "configs"]
    candidates += [Path(prefix) / "share" / "medssl" / "configs" for prefix in dict.fromkeys((sys.prefix, sys.base_prefix))]
    for folder in candidates:
        if folder.is_dir() and any(folder.rglob("*.yaml")):
            return folder
    raise ConfigError(f"no shipped configs found (looked in {', '.join(map(str, candidates))}); reinstall medssl")


def config_names(root: Path | None = None) -> list[str]:
    """Config names like ``finetune/demo_seg`` (path under the root without ``.yaml``)."""
    root = root or config_root()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def config_path(name: str) -> Path:
    """The file of config ``name`` (``.yaml`` optional); a typo gets the closest names."""
    root = config_root()
    clean = name.removesuffix(".yaml").removeprefix("configs/")
    names = config_names(root)
    if clean not in names:
        close = difflib.get_close_matches(clean, names, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `medssl configs list` shows them"
        raise ConfigError(f"unknown config {name!r}{hint}")
    return root / f"{clean}.yaml"


def _list(args: argparse.Namespace) -> int:
    for name in config_names():
        print(name)
    return 0


def _show(args: argparse.Namespace) -> int:
    path = config_path(args.name)
    if args.path:
        print(path)
    else:
        print(path.read_text(), end="")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "configs",
        help="list and show the experiment configs shipped with medssl",
        description="List the YAML experiment configs shipped with medssl, or print one to start your own "
        "from.\n\nexamples:\n  medssl configs list\n  medssl configs show finetune/demo_seg > my_seg.yaml\n"
        "  medssl pretrain --config $(medssl configs show pretrain/smoke --path) --out runs/p",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cs = p.add_subparsers(dest="configs_command", metavar="ACTION", required=True)
    ls = cs.add_parser("list", help="print the names of the shipped configs",
                       description="Print the names of the shipped configs, one a line.\n\nexample:\n  medssl configs list",
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ls.set_defaults(func=_list)
    show = cs.add_parser("show", help="print one config (or its file path)",
                         description="Print a shipped config's YAML, or with --path the file it is read from."
                         "\n\nexample:\n  medssl configs show finetune/demo_seg",
                         formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    show.add_argument("name", help="config name as `medssl configs list` prints it, e.g. finetune/demo_seg")
    show.add_argument("--path", action="store_true", help="print the file path instead of its contents")
    show.set_defaults(func=_show)
