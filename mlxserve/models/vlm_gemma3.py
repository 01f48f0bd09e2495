"""Gemma 3 vision front: SigLIP tower + pooled projector, fixed tokens per image, plain
RoPE (no M-RoPE), no native video (videos arrive as frames).

In the rendered prompt each image is one ``<start_of_image>`` token; it becomes
"\\n\\n<start_of_image>" + image tokens + "<end_of_image>\\n\\n" as Gemma 3's processor
writes it. Preprocessing uses transformers' torch-free PIL image processor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlxserve.models.vlm import PixelPatches, VisionFront, _none_dropped, _read_json

_IMAGE_KEYS = ("do_resize", "size", "resample", "do_rescale", "rescale_factor", "do_normalize",
               "image_mean", "image_std", "do_convert_rgb")


class Gemma3VisionFront(VisionFront):
    def __init__(self, vlm: Any, folder: str, model_type: str, tokenizer: Any):
        from transformers.models.gemma3.image_processing_pil_gemma3 import (
            Gemma3ImageProcessorPil)

        self.vlm = vlm
        self.model_type = model_type
        self.tokenizer = tokenizer
        cfg = vlm.config
        raw = _none_dropped(_read_json(folder, "preprocessor_config.json"))
        image_size = int(cfg.vision_config.image_size)
        kwargs = {k: raw[k] for k in _IMAGE_KEYS if k in raw}
        kwargs.setdefault("size", {"height": image_size, "width": image_size})
        self.image_processor = Gemma3ImageProcessorPil(do_pan_and_scan=False, **kwargs)
        self.video_processor = None
        self.tokens_per_image = int(cfg.text_config.mm_tokens_per_image)
        self.image_token_id = int(cfg.image_token_index)
        self.video_token_id = -1  # never in a prompt: no native video
        self.vision_start_id = int(tokenizer.convert_tokens_to_ids("<start_of_image>"))
        self.vision_end_id = int(tokenizer.convert_tokens_to_ids("<end_of_image>"))
        self.image_placeholder_id = self.vision_start_id
        self._blank_lines = list(tokenizer.encode("\n\n", add_special_tokens=False))
        self.native_video = False
        self.video_timestamps = False
        self.deepstack = False
        self.mrope = False
        # mlx-vlm divides by the top-level hidden size (the decoder multiplies it back).
        self._feature_scale = float(getattr(cfg, "hidden_size", 0) or cfg.text_config.hidden_size) ** 0.5

    def preprocess_image(self, image: Any) -> PixelPatches:
        from PIL import Image

        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        out = self.image_processor(images=[image], return_tensors="np")
        pixels = np.asarray(out["pixel_values"], dtype=np.float32)  # (1, 3, H, W)
        return PixelPatches(pixels, (1, pixels.shape[2], pixels.shape[3]),
                            self.tokens_per_image)

    def image_expansion(self, num_tokens: int) -> list[int]:
        return (self._blank_lines + [self.vision_start_id] + [self.image_token_id] * num_tokens
                + [self.vision_end_id] + self._blank_lines)

    def preprocess_video(self, frames: list[np.ndarray]) -> PixelPatches:
        raise NotImplementedError("Gemma 3 takes video as frames (images)")

    def encode_pixels(self, patches: PixelPatches) -> tuple[Any, None]:
        """Projected image features, divided by the factor the language model multiplies
        every input embedding by (so they enter the decoder unscaled, as upstream)."""
        import mlx.core as mx

        dtype = self.vlm.language_model.model.embed_tokens.weight.dtype
        pixels = mx.array(patches.pixels).transpose(0, 2, 3, 1).astype(dtype)
        hidden, _, _ = self.vlm.vision_tower(pixels, output_hidden_states=True)
        features = self.vlm.multi_modal_projector(hidden)[0]
        return features / self._feature_scale, None

    def rope_index(self, token_ids: Any, media: list):
        raise NotImplementedError("Gemma 3 uses plain RoPE positions")

    def make_text_cache(self) -> list:
        from mlx_lm.models.cache import KVCache, RotatingKVCache

        text = self.vlm.config.text_config
        pattern = int(text.sliding_window_pattern)
        return [KVCache() if i % pattern == pattern - 1
                else RotatingKVCache(max_size=int(text.sliding_window), keep=0)
                for i in range(int(text.num_hidden_layers))]
