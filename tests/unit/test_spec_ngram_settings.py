"""--speculative-config parsing and the n-gram proposer (pure Python)."""

import pytest

from mlxserve.engine.request import SamplingParams
from mlxserve.spec.ngram import NgramProposer
from mlxserve.spec.proposer import ProposalRow, TokenHistory
from mlxserve.spec.settings import parse_speculative_config


def test_ngram_config_parses_with_defaults():
    config = parse_speculative_config('{"method": "ngram", "num_speculative_tokens": 4}')
    assert (config.method, config.num_speculative_tokens) == ("ngram", 4)
    assert (config.prompt_lookup_min, config.prompt_lookup_max) == (2, 5)


def test_adaptive_false_reaches_the_controller():
    """``"adaptive": false`` (speculate on every step) used to be dropped by the parser,
    so the CLI option did nothing; build_speculation reads it from ``options``."""
    from mlxserve.engine.speculation import Speculation

    config = parse_speculative_config('{"method": "ngram", "adaptive": false}')
    assert config.options == {"adaptive": False}
    assert parse_speculative_config('{"method": "ngram"}').options == {}
    spec = Speculation(object(), config.num_speculative_tokens,
                       adaptive=config.options.get("adaptive", True))
    assert all(spec.wanted(8) for _ in range(100))


@pytest.mark.parametrize("text, words", [
    ("{", "not valid JSON"),
    ("[1]", "JSON object"),
    ('{"method": "eagle"}', "method must be one of"),
    ('{"method": "ngram", "model": "x"}', "unknown key(s) ['model']"),
    ('{"method": "draft_model"}', "needs ['model']"),
    ('{"method": "ngram", "num_speculative_tokens": 0}', "num_speculative_tokens"),
    ('{"method": "ngram", "num_speculative_tokens": true}', "num_speculative_tokens"),
    ('{"method": "ngram", "prompt_lookup_min": 4, "prompt_lookup_max": 2}', "exceed"),
])
def test_bad_configs_say_what_is_wrong(text, words):
    with pytest.raises(ValueError) as error:
        parse_speculative_config(text)
    assert words in str(error.value)


def _row(prompt, output, k=3):
    return ProposalRow("r", TokenHistory(prompt, output), k, SamplingParams())


def test_ngram_copies_the_latest_earlier_continuation():
    proposer = NgramProposer(2, 4)
    prompt, output = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3], []
    assert proposer.propose([_row(prompt, output)])[0].tokens == [4, 5, 6]
    output += [4, 5]  # the index catches up with the grown history
    assert proposer.propose([_row(prompt, output)])[0].tokens == [6, 7, 8]
    output += [9]
    assert proposer.propose([_row(prompt, output)])[0].tokens == []


def test_ngram_prefers_the_longest_match_and_caps_at_k():
    proposer = NgramProposer(1, 3)
    # "7 8" occurs twice; "6 7 8" (longer) only once, followed by 1 2 3 4
    prompt = [6, 7, 8, 1, 2, 3, 4, 9, 7, 8, 5, 6, 7, 8]
    assert proposer.propose([_row(prompt, [], k=2)])[0].tokens == [1, 2]


def test_history_slices_across_prompt_and_output():
    history = TokenHistory([1, 2, 3], [4, 5])
    assert history[1:4] == [2, 3, 4] and history[-1] == 5 and len(history) == 5
    assert list(history) == [1, 2, 3, 4, 5]
