"""The MTP adapter loads the ``mtp.*`` weights of tiny Qwen3.5 / Qwen3.5-MoE / Qwen3-Next
checkpoints written in the published layout, shares the target's embedding and head
(array identity: no second copy), and refuses checkpoints without heads clearly."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_lm.models.cache import make_prompt_cache
from tiny_models import make_tiny_model
from tiny_mtp import MTP_FAMILIES, make_tiny_mtp_model

from mlxserve.config import ModelConfig
from mlxserve.errors import ModelLoadError
from mlxserve.models.hidden import logits_and_hidden, output_head, text_trunk
from mlxserve.models.loader import load_model
from mlxserve.models.mtp import load_mtp_adapter, read_mtp_weights


@pytest.fixture(scope="module")
def mtp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-mtp")


def _load(folder: str):
    return load_model(ModelConfig(model=folder))


def _file_tensor(folder: str, name: str) -> np.ndarray:
    return np.array(read_mtp_weights(folder)[name])


@pytest.mark.parametrize("family", MTP_FAMILIES)
def test_adapter_loads_the_heads_and_shares_the_targets_arrays(mtp_root, family):
    folder = make_tiny_mtp_model(mtp_root, family)
    target = _load(folder)
    assert target.capabilities.has_mtp
    adapter = load_mtp_adapter(target)
    trunk = text_trunk(target.model)
    assert adapter.embed_tokens.weight is trunk.embed_tokens.weight
    assert adapter.lm_head is output_head(target.model)
    assert adapter.lm_head.weight is getattr(target.model, "language_model",
                                             target.model).lm_head.weight
    names = {k for k, _ in tree_flatten(adapter.head.parameters())}
    assert not any("embed_tokens" in n or "lm_head" in n for n in names)
    # every tensor comes from the checkpoint: fc as is, norms un-centred (1 + w)
    np.testing.assert_array_equal(np.array(adapter.head.fc.weight),
                                  _file_tensor(folder, "mtp.fc.weight"))
    np.testing.assert_allclose(np.array(adapter.head.pre_fc_norm_hidden.weight),
                               _file_tensor(folder, "mtp.pre_fc_norm_hidden.weight") + 1.0)
    np.testing.assert_allclose(
        np.array(adapter.head.layers[0].self_attn.q_norm.weight),
        _file_tensor(folder, "mtp.layers.0.self_attn.q_norm.weight") + 1.0)


@pytest.mark.parametrize("family, expert_key", [
    ("qwen3_5_moe", "mtp.layers.0.mlp.experts.gate_up_proj"),
    ("qwen3_next", "mtp.layers.0.mlp.experts.2.gate_proj.weight"),
])
def test_experts_are_stacked_from_either_published_form(mtp_root, family, expert_key):
    folder = make_tiny_mtp_model(mtp_root, family)
    adapter = load_mtp_adapter(_load(folder))
    gate = np.array(adapter.head.layers[0].mlp.switch_mlp.gate_proj.weight)
    stored = _file_tensor(folder, expert_key)
    if family == "qwen3_5_moe":  # (E, 2I, hidden): the gate's rows first
        np.testing.assert_array_equal(gate, stored[:, :gate.shape[1], :])
    else:
        np.testing.assert_array_equal(gate[2], stored)


@pytest.mark.parametrize("family", MTP_FAMILIES)
def test_a_head_step_reads_the_targets_hidden_state(mtp_root, family):
    target = _load(make_tiny_mtp_model(mtp_root, family))
    adapter = load_mtp_adapter(target)
    tokens = mx.array([[5, 17, 42, 8, 99]])
    logits, hidden = logits_and_hidden(target.model, tokens, make_prompt_cache(target.model))
    np.testing.assert_allclose(np.array(logits), np.array(
        target.model(tokens, cache=make_prompt_cache(target.model))), atol=1e-4)
    draft_logits, draft_hidden = adapter.step(hidden[:, :-1], tokens[:, 1:],
                                              adapter.make_cache())
    assert draft_logits.shape == (1, 4, logits.shape[-1])
    assert draft_hidden.shape == hidden[:, 1:].shape
    # the head depends on the hidden state it is given, not only on the token
    other, _ = adapter.step(hidden[:, :-1] * 0.5, tokens[:, 1:], adapter.make_cache())
    assert not np.allclose(np.array(other), np.array(draft_logits))


def test_a_checkpoint_without_mtp_weights_is_refused(mtp_root):
    # its config still names an MTP layer (as MLX conversions that drop the weights do)
    target = _load(make_tiny_mtp_model(mtp_root, "qwen3_5", with_mtp=False))
    with pytest.raises(ModelLoadError, match="has no mtp.\\* weights"):
        load_mtp_adapter(target)


def test_a_family_without_mtp_heads_is_refused(tmp_path):
    target = _load(make_tiny_model(tmp_path, "qwen3"))
    assert not target.capabilities.has_mtp
    with pytest.raises(ModelLoadError, match="MTP heads are supported for model types"):
        load_mtp_adapter(target)
