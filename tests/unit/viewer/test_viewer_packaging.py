"""CLI help and packaging: every subcommand has a description and an example, -i/-o short
forms, `medssl configs list/show`, every config folder listed as wheel data, the license
in SPDX form, Chromium installed without recommends."""

from __future__ import annotations

import tomllib

import pytest

from medssl.cli import build_parser, main
from medssl.cli.configs_cmds import config_names, config_path, config_root
from medssl.cli.help_examples import subcommands
from medssl.errors import EXIT_CONFIG
from tests.conftest import REPO


def test_every_subcommand_has_a_description_and_an_example():
    found = subcommands(build_parser())
    assert len(found) >= 18
    for path, parser in found:
        assert parser.description, f"medssl {path}: no description"
        assert "example" in (parser.epilog or parser.description).lower(), f"medssl {path}: no example"
        assert "medssl " in parser.format_help(), path


def test_predict_takes_short_input_and_output_flags(tmp_path):
    args = build_parser().parse_args(["predict", "--model", "m.pt", "-i", "a", "b", "-o", str(tmp_path)])
    assert [str(p) for p in args.input] == ["a", "b"] and args.output == tmp_path


def test_configs_list_and_show(capsys):
    names = config_names()
    assert "finetune/demo_seg" in names and "pretrain/smoke" in names
    assert main(["configs", "list"]) == 0
    assert capsys.readouterr().out.split() == names
    assert main(["configs", "show", "pretrain/smoke"]) == 0
    assert capsys.readouterr().out == (config_root() / "pretrain" / "smoke.yaml").read_text()
    assert main(["configs", "show", "finetune/demo_seg.yaml", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(config_path("finetune/demo_seg"))
    assert main(["configs", "show", "finetune/demo_se"]) == EXIT_CONFIG
    assert "did you mean finetune/demo_seg" in capsys.readouterr().err


def test_pyproject_ships_every_config_folder_and_the_viewer_component():
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert doc["project"]["license"] == "Apache-2.0"  # SPDX string, not the deprecated table
    data = doc["tool"]["setuptools"]["data-files"]
    folders = {p.parent.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    listed = {glob.rsplit("/", 1)[0] for globs in data.values() for glob in globs}
    assert folders == listed, "add the new configs/ folder to [tool.setuptools.data-files]"
    for target, globs in data.items():
        assert target == "share/medssl/" + globs[0].rsplit("/", 1)[0]
    assert doc["tool"]["setuptools"]["package-data"]["apps.viewer.components"] == ["slice_view_frontend/*.html"]
    assert (REPO / "apps/viewer/components/slice_view_frontend/index.html").is_file()


def test_make_installs_chromium_without_recommends():
    lines = [l for l in (REPO / "Makefile").read_text().splitlines() if "apt-get install" in l]
    assert lines and all("--no-install-recommends" in l for l in lines)


@pytest.mark.parametrize("cmd", [["configs", "--help"], ["viewer", "--help"]])
def test_help_exits_zero(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main(cmd)
    assert exc.value.code == 0 and "examples:" in capsys.readouterr().out
