"""Turn (prompt tokens with media placeholders, images, videos) into ``MultimodalInputs``.

``prepare_multimodal`` runs off the engine thread (numpy only): it preprocesses pixels,
expands each placeholder to the tokens its media becomes, and returns the expanded prompt
plus a ``MultimodalInputs`` whose ``encode(model)`` (run on the engine thread) encodes
the media (through an LRU cache keyed by content hash), merges the features into the
token embeddings and computes M-RoPE positions.

The prompt carries one image placeholder token per image and, for videos, one video
placeholder (native video) wrapped in vision start/end tokens, as the chat templates of
the Qwen-VL family render them. With ``video_as_images`` (or a family without native
video) each sampled frame becomes an image instead.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlxserve.engine.request import MultimodalInputs
from mlxserve.errors import InvalidRequest
from mlxserve.multimodal.video import DecodedVideo

if TYPE_CHECKING:  # models/ is a sibling layer: only its types are named here
    from mlxserve.models.vlm import PixelPatches, VisionFront


@dataclass
class MediaItem:
    kind: str  # "image" | "video"
    patches: "PixelPatches"
    content_hash: str
    seconds_per_grid: float = 0.0  # videos: seconds one temporal patch spans


@dataclass
class PreparedPrompt:
    prompt_tokens: list[int]  # placeholders expanded: len == len(embeddings)
    multimodal: MultimodalInputs
    image_tokens: int = 0
    video_tokens: int = 0
    items: list[MediaItem] = field(default_factory=list)


class EmbeddingCache:
    """LRU of vision features keyed by content hash. Engine thread only."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get_or_encode(self, item: MediaItem, vision: "VisionFront") -> tuple[Any, Any]:
        if item.content_hash in self._entries:
            self._entries.move_to_end(item.content_hash)
            self.hits += 1
            return self._entries[item.content_hash]
        self.misses += 1
        value = vision.encode_pixels(item.patches)
        if self.max_entries > 0:
            self._entries[item.content_hash] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)


_CACHES: "weakref.WeakKeyDictionary[Any, EmbeddingCache]" = weakref.WeakKeyDictionary()


def embedding_cache_for(vision: "VisionFront", max_entries: int) -> EmbeddingCache:
    """The one embedding cache of a loaded VLM (created on first use)."""
    cache = _CACHES.get(vision)
    if cache is None:
        cache = _CACHES[vision] = EmbeddingCache(max_entries)
    return cache


def _hash_patches(kind: str, patches: "PixelPatches") -> str:
    digest = hashlib.sha256(kind.encode())
    digest.update(np.asarray(patches.grid_thw, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(patches.pixels).tobytes())
    return digest.hexdigest()


def _group_timestamps(video: DecodedVideo, temporal: int) -> list[float]:
    times = list(video.timestamps)
    times += times[-1:] * (-len(times) % temporal)
    return [(times[i] + times[i + temporal - 1]) / 2 for i in range(0, len(times), temporal)]


class _Expander:
    """Builds the expanded prompt and the media items in prompt order."""

    def __init__(self, vision: "VisionFront", video_as_images: bool):
        self.vision = vision
        self.video_as_images = video_as_images
        self.tokens: list[int] = []
        self.items: list[MediaItem] = []
        self.image_tokens = 0
        self.video_tokens = 0

    def add_image(self, image: Any) -> None:
        patches = self.vision.preprocess_image(image)
        self.items.append(MediaItem("image", patches, _hash_patches("image", patches)))
        self.tokens += self.vision.image_expansion(patches.num_tokens)
        self.image_tokens += patches.num_tokens

    def add_video(self, video: DecodedVideo) -> None:
        """Replaces "<vision_start><video_pad><vision_end>" (start already emitted)."""
        v = self.vision
        wrapped = bool(self.tokens) and self.tokens[-1] == v.vision_start_id
        if self.video_as_images:
            for i, frame in enumerate(video.frames):
                if i > 0 and wrapped:  # each frame its own block; the template closes the last
                    self.tokens += [v.vision_end_id, v.vision_start_id]
                self.add_image(frame)
            return
        patches = v.preprocess_video(video.frames)
        seconds = v.temporal_patch_size / video.sampled_fps if video.sampled_fps > 0 else 0.0
        self.items.append(MediaItem("video", patches, _hash_patches("video", patches),
                                    seconds))
        grid_t = patches.grid_thw[0]
        per_group = patches.num_tokens // grid_t
        self.video_tokens += patches.num_tokens
        if not v.video_timestamps or not wrapped:
            self.tokens += [v.video_token_id] * patches.num_tokens
            return
        self.tokens.pop()  # each temporal group gets its own start/end and timestamp
        stamps = _group_timestamps(video, v.temporal_patch_size)
        for i, seconds in enumerate(stamps):
            self.tokens += v.timestamp_tokens(seconds) + [v.vision_start_id]
            self.tokens += [v.video_token_id] * per_group
            if i < len(stamps) - 1:
                self.tokens.append(v.vision_end_id)


def prepare_multimodal(prompt_tokens: list[int], images: list[Any], videos: list[DecodedVideo],
                       vision: "VisionFront", *, video_as_images: bool = False,
                       cache: EmbeddingCache | None = None) -> PreparedPrompt:
    """Expand placeholders and build the request's ``MultimodalInputs``.

    ``images`` are RGB Pillow images or (H, W, 3) uint8 arrays in prompt order, ``videos``
    decoded clips in prompt order."""
    if videos and not vision.native_video:
        raise InvalidRequest("this model takes video as frames: send them as images",
                             param="messages")
    n_image = sum(1 for t in prompt_tokens if t == vision.image_placeholder_id)
    n_video = sum(1 for t in prompt_tokens if t == vision.video_token_id)
    if n_image != len(images) or n_video != len(videos):
        raise InvalidRequest(
            f"the prompt has {n_image} image and {n_video} video placeholders but the "
            f"request has {len(images)} images and {len(videos)} videos", param="messages")
    expander = _Expander(vision, video_as_images)
    image_iter, video_iter = iter(images), iter(videos)
    for token in prompt_tokens:
        if token == vision.image_placeholder_id:
            expander.add_image(next(image_iter))
        elif token == vision.video_token_id:
            expander.add_video(next(video_iter))
        else:
            expander.tokens.append(token)
    tokens, items = expander.tokens, expander.items
    key = hashlib.sha256("".join(i.content_hash for i in items).encode()).hexdigest()
    encode = _MediaEncoder(tokens, items, vision, cache)
    media = expander.image_tokens + expander.video_tokens
    key_tokens = media_key_tokens(tokens, items, {vision.image_token_id, vision.video_token_id})
    return PreparedPrompt(tokens, MultimodalInputs(encode=encode, media_tokens=media,
                                                   cache_key=key, key_tokens=key_tokens),
                          expander.image_tokens, expander.video_tokens, items)


def media_key_tokens(tokens: list[int], items: list[MediaItem], media_ids: set[int]) -> list[int]:
    """``tokens`` with the j-th media token of item i replaced by a negative id made of
    item i's content hash and j (items in prompt order, ``num_tokens`` media tokens each)."""
    spans = [(int(item.content_hash[:15], 16), item.patches.num_tokens) for item in items]
    out, k, used = [], 0, 0
    for token in tokens:
        if token not in media_ids or k >= len(spans):
            out.append(token)
            continue
        content, count = spans[k]
        out.append(-1 - ((content << 24) | used))
        used += 1
        if used == count:
            k, used = k + 1, 0
    return out


class _MediaEncoder:
    """The ``encode`` callable: run on the engine thread with the decoder model."""

    def __init__(self, tokens: list[int], items: list[MediaItem], vision: "VisionFront",
                 cache: EmbeddingCache | None):
        self.tokens = tokens
        self.items = items
        self.vision = vision
        self.cache = cache

    def _features(self, item: MediaItem) -> tuple[Any, Any]:
        if self.cache is not None:
            return self.cache.get_or_encode(item, self.vision)
        return self.vision.encode_pixels(item.patches)

    def __call__(self, model: Any = None) -> tuple[Any, Any, Any]:
        import mlx.core as mx

        from mlxserve.models.vlm import VisionExtras

        v = self.vision
        ids_np = np.asarray(self.tokens, dtype=np.int32)
        ids = mx.array(ids_np)
        embeddings = v.embed_tokens(ids)
        encoded = [self._features(item) for item in self.items]
        for kind, token_id in (("image", v.image_token_id), ("video", v.video_token_id)):
            feats = [f for (f, _), it in zip(encoded, self.items) if it.kind == kind]
            if feats:
                where = mx.array(np.flatnonzero(ids_np == token_id).astype(np.uint32))
                embeddings[where] = mx.concatenate(feats, axis=0).astype(embeddings.dtype)
        extras = VisionExtras()
        positions = None
        if v.mrope:
            media = [(i.kind, i.patches.grid_thw, i.seconds_per_grid) for i in self.items]
            positions, extras.rope_delta = v.rope_index(ids_np, media)
        if v.deepstack and encoded:
            extras.visual_pos_masks = mx.array(
                (ids_np == v.image_token_id) | (ids_np == v.video_token_id))[None]
            # Items appear in prompt order, so concatenating keeps token order.
            layers = len(encoded[0][1])
            extras.deepstack_embeds = [mx.concatenate([d[layer] for _, d in encoded], axis=0)
                                       for layer in range(layers)]
        return embeddings, positions, extras
