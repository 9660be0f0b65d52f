"""The training configuration's one declared schema and what derives from it: the config
classes' defaults, the `train --set` help and the generated docs page."""
import runpy
import sys
import warnings
from dataclasses import MISSING, fields

from lirpa_diffai.__main__ import build_parser
from lirpa_diffai.training.schema import (OPTIMIZER_KEYS, REQUIRED, TRAIN_KEYS, OptimizerConfig,
                                          TrainConfig, config_markdown, rows, set_help)
from tests.support import REPO

DOCS_PAGE = REPO / "docs" / "configuration-keys.md"


def default_of(f):
    return f.default_factory() if f.default_factory is not MISSING else f.default


def test_config_classes_take_their_fields_and_defaults_from_the_schema():
    for cls, keys, extra in ((TrainConfig, TRAIN_KEYS, ["source"]),
                             (OptimizerConfig, OPTIMIZER_KEYS, [])):
        assert [f.name for f in fields(cls)] == [k.name for k in keys] + extra
        for key, f in zip(keys, fields(cls)):
            expected = MISSING if key.default is REQUIRED else key.default
            assert default_of(f) == expected, key.name


def test_set_help_names_every_key_with_its_default():
    text = set_help()
    for name, _ in rows():
        assert f"{name} (" in text
    assert "optimizer.lr (0.001)" in text and "network (required)" in text and "`" not in text
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert any(a.help == text for a in train._actions if "--set" in a.option_strings)


def test_the_docs_page_is_the_generated_one():
    """``docs/configuration-keys.md`` is ``python -m lirpa_diffai.training --markdown``;
    after a change to the schema, regenerate it with that command."""
    assert DOCS_PAGE.read_text() == config_markdown()


def test_markdown_entry_point_prints_the_page(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lirpa_diffai.training", "--markdown"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # runpy warns when the module ran was imported before
        runpy.run_module("lirpa_diffai.training", run_name="__main__")
    assert capsys.readouterr().out == config_markdown()


def test_markdown_has_one_row_per_key_and_sections_expanded():
    table = [line for line in config_markdown().splitlines() if line.startswith("| ")][1:]
    names = [line.split(" | ")[0][2:] for line in table]
    assert names == [name for name, _ in rows()]
    assert "hzono.relu" in names and "optimizer.momentum" in names and "hzono" not in names
    assert "| eps | a number in (0.0, 1.0] | required |" in config_markdown()
