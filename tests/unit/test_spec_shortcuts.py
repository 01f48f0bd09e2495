"""--draft-model / --enable-mtp: shortcuts for the --speculative-config JSON they name."""

import argparse

import pytest

from mlxserve.cli.args import CliError, add_serve_args, model_and_engine_configs


def _speculative(*argv: str):
    parser = argparse.ArgumentParser()
    add_serve_args(parser)
    return model_and_engine_configs(parser.parse_args(["target", *argv]))[1].speculative


def test_draft_model_shortcut_names_the_draft():
    config = _speculative("--draft-model", "qwen2.5-coder-0.5b")
    assert (config.method, config.model) == ("draft_model", "qwen2.5-coder-0.5b")


def test_enable_mtp_shortcut():
    assert _speculative("--enable-mtp").method == "mtp"


def test_no_flag_no_speculation():
    assert _speculative() is None


@pytest.mark.parametrize("argv, words", [
    (("--enable-mtp", "--speculative-config", '{"method": "ngram"}'), "not both"),
    (("--draft-model", "d", "--enable-mtp"), "pick one"),
])
def test_conflicting_flags_are_refused(argv, words):
    with pytest.raises(CliError, match=words):
        _speculative(*argv)
