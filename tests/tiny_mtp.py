"""Tiny random Qwen3.5-, Qwen3.5-MoE- and Qwen3-Next-shaped checkpoints with random
``mtp.*`` weights, written as real Hugging Face folders in the real layout.

Everything is written the way the published checkpoints are (what mlx-lm's sanitize and
the MTP adapter must undo): Hugging Face tensor names (``model.language_model.*`` for
Qwen3.5, ``model.*`` for Qwen3-Next), gated-delta conv1d weights as (C, 1, K), RMS norms
zero-centred (stored ``w - 1``), Qwen3.5-MoE experts fused (``experts.gate_up_proj``),
Qwen3-Next experts one tensor each, and the MTP head's tensors listed explicitly by name
and shape below (not derived from the adapter's module, so a layout mistake there fails).
"""

from __future__ import annotations

from pathlib import Path

from tiny_models import (_random_weights, new_model_folder, save_model_folder,
                         tokenizer_vocab_size)

_TRUNK = dict(
    hidden_size=64, num_hidden_layers=4, intermediate_size=128, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, max_position_embeddings=4096,
    linear_num_value_heads=2, linear_num_key_heads=2, linear_key_head_dim=16,
    linear_value_head_dim=16, linear_conv_kernel_dim=4, full_attention_interval=2,
    tie_word_embeddings=False,
)
_MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
            shared_expert_intermediate_size=32, norm_topk_prob=True, decoder_sparse_step=1)
_ROPE = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
MTP_FAMILIES = ("qwen3_5", "qwen3_5_moe", "qwen3_next")
# trunk norms mlx-lm shifts by one when it converts a Hugging Face checkpoint
_CENTRED_NORMS = (".input_layernorm.weight", ".post_attention_layernorm.weight",
                  "model.norm.weight", ".q_norm.weight", ".k_norm.weight")


def _config(family: str) -> dict:
    vocab = tokenizer_vocab_size()
    if family == "qwen3_next":
        return dict(_TRUNK, **_MOE, model_type="qwen3_next", vocab_size=vocab,
                    mlp_only_layers=[], rope_theta=10000.0, partial_rotary_factor=0.5,
                    num_nextn_predict_layers=1)
    text = dict(_TRUNK, model_type=f"{family}_text", vocab_size=vocab,
                rope_parameters=dict(_ROPE), mtp_num_hidden_layers=1)
    if family == "qwen3_5_moe":
        text.update(_MOE)
    return {"model_type": family, "text_config": text, "tie_word_embeddings": False}


def _mtp_shapes(text: dict, family: str) -> dict[str, tuple[int, ...]]:
    """The MTP head's tensors as the published checkpoints name and shape them."""
    h, heads, kv, hd = (text["hidden_size"], text["num_attention_heads"],
                        text["num_key_value_heads"], text["head_dim"])
    layer = "mtp.layers.0."
    shapes = {"mtp.fc.weight": (h, 2 * h), "mtp.norm.weight": (h,),
              "mtp.pre_fc_norm_embedding.weight": (h,), "mtp.pre_fc_norm_hidden.weight": (h,),
              layer + "input_layernorm.weight": (h,),
              layer + "post_attention_layernorm.weight": (h,),
              layer + "self_attn.q_proj.weight": (2 * heads * hd, h),  # queries + gate
              layer + "self_attn.k_proj.weight": (kv * hd, h),
              layer + "self_attn.v_proj.weight": (kv * hd, h),
              layer + "self_attn.o_proj.weight": (h, heads * hd),
              layer + "self_attn.q_norm.weight": (hd,), layer + "self_attn.k_norm.weight": (hd,)}
    if family == "qwen3_5":
        inter = text["intermediate_size"]
        return shapes | {layer + "mlp.gate_proj.weight": (inter, h),
                         layer + "mlp.up_proj.weight": (inter, h),
                         layer + "mlp.down_proj.weight": (h, inter)}
    experts, inter, shared = (text["num_experts"], text["moe_intermediate_size"],
                              text["shared_expert_intermediate_size"])
    mlp = layer + "mlp."
    shapes |= {mlp + "gate.weight": (experts, h), mlp + "shared_expert_gate.weight": (1, h),
               mlp + "shared_expert.gate_proj.weight": (shared, h),
               mlp + "shared_expert.up_proj.weight": (shared, h),
               mlp + "shared_expert.down_proj.weight": (h, shared)}
    if family == "qwen3_5_moe":
        return shapes | {mlp + "experts.gate_up_proj": (experts, 2 * inter, h),
                         mlp + "experts.down_proj": (experts, h, inter)}
    for e in range(experts):
        shapes |= {f"{mlp}experts.{e}.gate_proj.weight": (inter, h),
                   f"{mlp}experts.{e}.up_proj.weight": (inter, h),
                   f"{mlp}experts.{e}.down_proj.weight": (h, inter)}
    return shapes


def _as_hf(name: str, value, family: str) -> dict:
    """One mlx-lm trunk tensor → the Hugging Face tensor(s) it came from."""
    import mlx.core as mx

    if family != "qwen3_next":
        name = name.replace("language_model.model.", "model.language_model.")
        name = name.replace("language_model.lm_head.", "lm_head.")
    if "conv1d.weight" in name:
        value = mx.swapaxes(value, 1, 2)  # MLX (C, K, 1) → Hugging Face (C, 1, K)
    if value.ndim == 1 and any(name.endswith(s) for s in _CENTRED_NORMS):
        value = value - 1.0
    head, sep, part = name.partition(".mlp.switch_mlp.")
    if not sep:
        return {name: value}
    part = part.removesuffix(".weight")
    if family == "qwen3_next":
        return {f"{head}.mlp.experts.{e}.{part}.weight": value[e]
                for e in range(value.shape[0])}
    if part == "down_proj":
        return {f"{head}.mlp.experts.down_proj": value}
    return {f"{head}.mlp.experts.{part}": value}  # gate / up: fused below


def _fuse_gate_up(weights: dict) -> dict:
    import mlx.core as mx

    out = {}
    for name, value in weights.items():
        if name.endswith(".experts.gate_proj"):
            up = weights[name.replace("gate_proj", "up_proj")]
            out[name.replace("gate_proj", "gate_up_proj")] = mx.concatenate([value, up], 1)
        elif not name.endswith(".experts.up_proj"):
            out[name] = value
    return out


def _mtp_weights(shapes: dict, seed: int, scale: float) -> dict:
    """Random MTP tensors; norms stored zero-centred like the trunk's."""
    import mlx.core as mx

    mx.random.seed(seed + 1000)
    out = {}
    for name, shape in shapes.items():
        if len(shape) == 1:  # every 1-d tensor of the head is a norm's scale
            out[name] = mx.random.uniform(-0.2, 0.2, shape)  # 1 + w around one
        else:
            fan_in = shape[-1]
            out[name] = mx.random.normal(shape) * (scale / fan_in ** 0.5)
    return out


def make_tiny_mtp_model(tmp_path, family: str = "qwen3_5", *, seed: int = 0,
                        scale: float = 3.0, with_mtp: bool = True) -> str:
    """Write a tiny random ``family`` checkpoint (with ``mtp.*`` weights unless
    ``with_mtp`` is False) as a Hugging Face folder under ``tmp_path``; return it."""
    if family not in MTP_FAMILIES:
        raise ValueError(f"unknown MTP family {family!r}; known: {MTP_FAMILIES}")
    folder = Path(tmp_path) / f"tiny-mtp-{family}-{seed}-{int(with_mtp)}"
    eos = new_model_folder(folder)
    if eos is None:
        return str(folder)
    config = _config(family)
    config.update(eos_token_id=eos, torch_dtype="float32")
    weights = {}
    for name, value in _random_weights(config, seed, scale).items():
        weights.update(_as_hf(name, value, family))
    weights = _fuse_gate_up(weights)
    if with_mtp:
        text = config.get("text_config", config)
        weights.update(_mtp_weights(_mtp_shapes(text, family), seed, scale))
    return save_model_folder(folder, config, weights)
