"""The `medssl` command itself: help, exit statuses, overrides anywhere after the subcommand."""

import pytest

from medssl.cli import build_parser, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("inspect", "convert", "data", "pretrain", "finetune", "sweep", "predict", "viewer", "demo"):
        assert name in out


def test_overrides_may_follow_options():
    parser = build_parser()
    args, extra = parser.parse_known_args(
        ["finetune", "--config", "c.yaml", "--out", "r", "data.root=D", "--pretrained", "e.pt", "train.max_steps=3"]
    )
    assert args.overrides == ["data.root=D"] and extra == ["train.max_steps=3"]  # argparse alone drops it


def test_main_joins_late_overrides(monkeypatch):
    seen = {}

    def fake_run(args):
        seen["overrides"] = args.overrides
        return 0

    monkeypatch.setattr("medssl.cli.finetune_cmds.run_finetune_cmd", fake_run)
    assert main(["finetune", "--config", "c", "--out", "r", "a=1", "--pretrained", "p", "b=2"]) == 0
    assert seen["overrides"] == ["a=1", "b=2"]


def test_unknown_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["inspect", "x.nii", "--no-such-flag"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_no_command_prints_help_and_usage_status(capsys):
    assert main([]) == 2


def test_internal_errors_print_the_class_only(monkeypatch, capsys):
    def boom(args):
        raise ValueError("could not convert string to float: '1.5 SENTINEL^PHI'")

    monkeypatch.setattr("medssl.cli.io_cmds.run_inspect", boom)
    assert main(["inspect", "x.nii"]) == 1
    err = capsys.readouterr().err
    assert "ValueError" in err and "SENTINEL" not in err and "Traceback" not in err
