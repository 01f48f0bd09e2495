"""Vision-language models through mlx-vlm (pinned: mlx-vlm >=0.7.10,<0.8).

``load_vlm(path)`` loads the mlx-vlm model and returns a ``LoadedModel`` whose ``model`` is
a ``VLMTextDecoder``: the VLM's own language model (same arrays, no copy) in mlx-lm's
calling convention, so text-only requests take the ordinary text path. Its ``vision``
field is a ``VisionFront``: the processors and the vision tower, used by
``mlxserve.multimodal.encode`` to turn media into embeddings and M-RoPE positions.

Family knowledge (token ids, native video, timestamps, deepstack) stays in this file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlxserve.errors import ModelLoadError
from mlxserve.models.capabilities import ModelCapabilities
from mlxserve.models.loaded import LoadedModel

# Families whose vision front is implemented here (mlx-vlm model_type).
QWEN_VL_FAMILIES = {"qwen2_vl": 14, "qwen2_5_vl": 14, "qwen3_vl": 16}  # default patch size
_TIMESTAMPED_VIDEO = {"qwen3_vl"}  # "<t seconds>" before each temporal group
_DEEPSTACK = {"qwen3_vl"}  # vision features also added inside early decoder layers
OTHER_FAMILIES = {"gemma3"}  # images only; videos become frames (models/vlm_gemma3.py)


def is_vlm_config(config: dict) -> bool:
    """True when the folder's config describes a VLM this module can load."""
    model_type = str(config.get("model_type", "")).lower()
    return "vision_config" in config and (model_type in QWEN_VL_FAMILIES
                                          or model_type in OTHER_FAMILIES)


@dataclass
class VisionExtras:
    """Per-request values the decoder needs besides embeddings and positions."""

    rope_delta: int = 0  # decode position = cache offset + rope_delta (M-RoPE)
    visual_pos_masks: Any = None  # (1, L) bool, deepstack families only
    deepstack_embeds: Any = None  # list of (n_visual, hidden), deepstack families only


@dataclass
class PixelPatches:
    pixels: np.ndarray  # (patches, C * temporal * patch * patch) float32
    grid_thw: tuple[int, int, int]
    num_tokens: int  # language-model tokens these patches become


def _none_dropped(raw: dict | None) -> dict:
    return {k: v for k, v in (raw or {}).items() if v is not None}


def _read_json(folder: str, name: str) -> dict | None:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def processor_kwargs(raw: dict | None, patch_size: int, video: bool) -> dict:
    """Constructor values for mlx-vlm's Qwen-VL processors from a shipped config.

    Explicit nulls (``"min_pixels": null``) mean "the default", so they are dropped."""
    raw = _none_dropped(raw)
    keys = ["patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std",
            "rescale_factor", "do_rescale", "do_normalize", "do_convert_rgb"]
    if video:
        keys += ["fps", "min_frames", "max_frames"]
    out = {"patch_size": patch_size}
    out.update({k: raw[k] for k in keys if k in raw})
    size = _none_dropped(raw.get("size"))
    for size_key, name in (("shortest_edge", "min_pixels"), ("longest_edge", "max_pixels")):
        if size_key in size:
            out[name] = size[size_key]
        if name in raw:
            out[name] = raw[name]
    return out


class VisionFront:
    """Processors + vision tower + the family's prompt conventions (Qwen-VL family; other
    families subclass it). Pixel preprocessing is numpy (any thread); ``encode_pixels``,
    ``rope_index`` and ``make_text_cache`` run MLX (engine thread).

    In the rendered prompt each image is one ``image_placeholder_id`` token, replaced by
    ``image_expansion(n)``; each native video one ``video_token_id`` token."""

    def __init__(self, vlm: Any, folder: str, model_type: str, tokenizer: Any):
        from mlx_vlm.models.qwen3_vl.processing_qwen3_vl import (Qwen3VLImageProcessor,
                                                                 Qwen3VLVideoProcessor)

        self.vlm = vlm
        self.model_type = model_type
        self.tokenizer = tokenizer
        cfg = vlm.config
        patch = int(getattr(cfg.vision_config, "patch_size", 0) or QWEN_VL_FAMILIES[model_type])
        image_raw = _read_json(folder, "preprocessor_config.json")
        video_raw = _read_json(folder, "video_preprocessor_config.json") or image_raw
        self.image_processor = Qwen3VLImageProcessor(**processor_kwargs(image_raw, patch, False))
        self.video_processor = Qwen3VLVideoProcessor(**processor_kwargs(video_raw, patch, True))
        self.image_token_id = int(cfg.image_token_id)
        self.image_placeholder_id = self.image_token_id
        self.video_token_id = int(cfg.video_token_id)
        self.vision_start_id = int(cfg.vision_start_token_id)
        self.vision_end_id = int(getattr(cfg, "vision_end_token_id", self.vision_start_id + 1))
        self.native_video = True
        self.video_timestamps = model_type in _TIMESTAMPED_VIDEO
        self.deepstack = model_type in _DEEPSTACK
        self.mrope = True

    # --- preprocessing (numpy) ----------------------------------------------------------

    def preprocess_image(self, image: Any) -> PixelPatches:
        """``image``: an RGB Pillow image or an (H, W, 3) uint8 array (a video frame)."""
        if isinstance(image, np.ndarray):
            image = np.ascontiguousarray(image.transpose(2, 0, 1))  # the processor takes CHW
        out = self.image_processor([image])
        grid = tuple(int(x) for x in out["image_grid_thw"][0])
        merge = self.image_processor.merge_size ** 2
        return PixelPatches(out["pixel_values"].astype(np.float32), grid,
                            grid[0] * grid[1] * grid[2] // merge)

    def preprocess_video(self, frames: list[np.ndarray]) -> PixelPatches:
        out = self.video_processor([list(frames)])
        grid = tuple(int(x) for x in out["video_grid_thw"][0])
        merge = self.video_processor.merge_size ** 2
        return PixelPatches(out["pixel_values_videos"].astype(np.float32), grid,
                            grid[0] * grid[1] * grid[2] // merge)

    def image_expansion(self, num_tokens: int) -> list[int]:
        return [self.image_token_id] * num_tokens

    @property
    def temporal_patch_size(self) -> int:
        return int(self.video_processor.temporal_patch_size)

    def timestamp_tokens(self, seconds: float) -> list[int]:
        return list(self.tokenizer.encode(f"<{seconds:.1f} seconds>", add_special_tokens=False))

    # --- MLX (engine thread) ------------------------------------------------------------

    def encode_pixels(self, patches: PixelPatches) -> tuple[Any, list | None]:
        """Vision features (num_tokens, hidden) and, for deepstack families, the
        per-layer extra features."""
        import mlx.core as mx

        tower = self.vlm.vision_tower
        dtype = tower.patch_embed.proj.weight.dtype
        pixels = mx.array(patches.pixels).astype(dtype)
        grid = mx.array([list(patches.grid_thw)], dtype=mx.int32)
        if self.deepstack:
            features, deepstack = tower(pixels, grid)
            return features, list(deepstack)
        return tower(pixels, grid, output_hidden_states=False), None

    def embed_tokens(self, token_ids: Any) -> Any:
        return self.vlm.language_model.model.embed_tokens(token_ids)

    def make_text_cache(self) -> list:
        from mlx_lm.models.cache import KVCache

        return [KVCache() for _ in self.vlm.language_model.model.layers]

    def rope_index(self, token_ids: np.ndarray, media: list[tuple[str, tuple, float]]
                   ) -> tuple[Any, int]:
        """M-RoPE positions (3, L) of one prompt and its decode delta. ``media`` lists
        (kind, grid_thw, seconds per temporal patch) in prompt order."""
        import mlx.core as mx

        from mlxserve.models.vlm_rope import MediaBlock, mrope_positions

        if self.video_timestamps:  # Qwen3-VL: per-frame blocks, upstream's own indexing
            return self._upstream_rope_index(token_ids, media)
        blocks = [MediaBlock(self.image_token_id if kind == "image" else self.video_token_id,
                             tuple(grid), self._time_scale(kind, seconds))
                  for kind, grid, seconds in media]
        positions, delta = mrope_positions(token_ids, blocks, self.image_processor.merge_size)
        return mx.array(positions, dtype=mx.int32), delta

    def _time_scale(self, kind: str, seconds_per_grid: float) -> float:
        """Qwen2.5-VL places video patches at absolute time (tokens_per_second)."""
        per_second = getattr(self.vlm.config.vision_config, "tokens_per_second", None)
        if kind != "video" or self.model_type != "qwen2_5_vl" or not per_second:
            return 1.0
        return seconds_per_grid * float(per_second)

    def _upstream_rope_index(self, token_ids: np.ndarray, media: list) -> tuple[Any, int]:
        import mlx.core as mx

        image = [list(g) for k, g, _ in media if k == "image"]
        video = [list(g) for k, g, _ in media if k == "video"]
        positions, deltas = self.vlm.language_model.get_rope_index(
            mx.array(token_ids)[None], mx.array(image, dtype=mx.int32) if image else None,
            mx.array(video, dtype=mx.int32) if video else None, None)
        delta = int(np.array(deltas).reshape(-1)[0]) if deltas is not None else 0
        return positions[:, 0, :], delta


def _eos_ids(folder: str, config: dict, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (config, _read_json(folder, "generation_config.json") or {}):
        value = source.get("eos_token_id")
        ids.update(value if isinstance(value, list) else [value] if value is not None else [])
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return {int(i) for i in ids}


def load_vlm(path: str, name: str | None = None, dtype: str = "auto") -> LoadedModel:
    """Load a VLM folder; call on the engine thread (it creates MLX arrays)."""
    import mlx.core as mx
    from mlx_lm.tokenizer_utils import load as load_tokenizer
    from mlx_vlm.utils import load_model as vlm_load_model

    from mlxserve.backend import is_cpu_only
    from mlxserve.models.probe import cache_kinds
    from mlxserve.models.vlm_decoder import VLMTextDecoder

    config = _read_json(path, "config.json")
    if config is None or not is_vlm_config(config):
        raise ModelLoadError("the model folder is not a supported vision-language model")
    model_type = str(config["model_type"]).lower()
    try:
        vlm = vlm_load_model(Path(path))
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise ModelLoadError(f"could not load the vision-language model: {e}") from None
    if dtype == "float32" or (dtype == "auto" and is_cpu_only()):
        vlm.set_dtype(mx.float32)
    tokenizer = load_tokenizer(Path(path))
    if model_type in OTHER_FAMILIES:
        from mlxserve.models.vlm_gemma3 import Gemma3VisionFront

        vision: VisionFront = Gemma3VisionFront(vlm, path, model_type, tokenizer)
    else:
        vision = VisionFront(vlm, path, model_type, tokenizer)
    text = config.get("text_config") or config
    trimmable, sliding = cache_kinds(vision.make_text_cache())
    caps = ModelCapabilities(
        model_type=model_type,
        context_length=int(text.get("max_position_embeddings") or 4096),
        vocab_size=int(text.get("vocab_size") or config.get("vocab_size") or 0),
        has_vision=True, has_video=True, mrope=vision.mrope,
        cache_trimmable=trimmable, has_sliding_window=sliding,
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        dtype=str(vlm.language_model.model.embed_tokens.weight.dtype).replace("mlx.core.", ""),
    )
    decoder = VLMTextDecoder(vlm, vision)
    return LoadedModel(model=decoder, tokenizer=tokenizer, capabilities=caps,
                       name=name or os.path.basename(os.path.normpath(path)), path=path,
                       eos_token_ids=_eos_ids(path, config, tokenizer), config=config,
                       vision=vision)
