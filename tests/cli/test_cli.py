"""What every subcommand of ``python -m lirpa_diffai`` shares: the help, the common options, the
error convention and the check of output paths before any work."""
import pytest
import torch

from lirpa_diffai import __main__ as cli
from lirpa_diffai.cli import common


def leaf_commands() -> dict[str, object]:
    """``{"plot layers": parser, ...}``: every command line that runs something."""
    out = {}

    def walk(parser, words):
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            out[" ".join(words)] = parser
        for action in subs:
            for name, choice in action.choices.items():
                walk(choice, words + [name])
    walk(cli.build_parser(), [])
    return out


def test_top_level_help_is_plain_text(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and "COMMAND --help" in text
    for command in ("train", "certify", "graft", "plot", "export", "install-hook"):
        assert command in text


def test_every_command_takes_the_common_options():
    leaves = leaf_commands()
    assert set(leaves) == {"train", "certify", "graft", "plot layers", "plot training",
                           "export", "install-hook"}
    for words, parser in leaves.items():
        options = {o for a in parser._actions for o in a.option_strings}
        assert "--threads" in options, words


@pytest.mark.parametrize("argv", [["plot", "training", "m.jsonl"], ["certify", "run"],
                                  ["plot", "layers"]])
def test_threads_take_effect_before_the_command_runs(argv, monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    parser = cli.build_parser()
    args = parser.parse_args(argv + ["--threads", "3"])
    args.run = lambda a: 0
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(args))
    assert cli.main(argv) == 0 and seen == [3]


class _Fixed:
    """A parser that returns the given arguments."""

    def __init__(self, args):
        self.args = args

    def parse_args(self, argv):
        return self.args


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_threads_must_be_a_positive_integer(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["plot", "training", "m.jsonl", "--threads", value])
    assert exit_.value.code == 2 and "must be a positive integer" in capsys.readouterr().err


def test_certify_refuses_an_unwritable_json_before_any_method(tmp_path, capsys, monkeypatch):
    import lirpa_diffai.pipeline.certify_run as evaluation
    monkeypatch.setattr(evaluation, "certify_checkpoint",
                        lambda *a, **k: pytest.fail("certify ran before the --json check"))
    assert cli.main(["certify", str(tmp_path), "--json", "/nonexistent/dir/x.json"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --json /nonexistent/dir/x.json: directory /nonexistent/dir does not exist\n"
    assert cli.main(["certify", str(tmp_path), "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_output_path_check(tmp_path):
    common.check_output_path(None, "--json")
    common.check_output_path(str(tmp_path / "new.json"), "--json")
    common.check_output_path("relative.json", "--json")   # the current directory
    with pytest.raises(common.CommandError, match="directory .*missing does not exist"):
        common.check_output_path(str(tmp_path / "missing" / "x.png"), "--out")


def test_a_command_error_prints_error_and_exits_2(capsys, monkeypatch):
    def failing(args):
        raise common.CommandError("what was wrong")
    args = cli.build_parser().parse_args(["install-hook"])
    args.run = failing
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(args))
    assert cli.main(["install-hook"]) == 2
    assert capsys.readouterr().err == "error: what was wrong\n"
