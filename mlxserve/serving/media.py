"""Media content parts of chat messages → placeholders for the chat template, and the
fetched, decoded media → the request's ``MultimodalInputs``.

Accepted parts (user messages only): ``{"type": "image_url", "image_url": {"url": ...}}``
(or ``"image_url": "..."``), ``{"type": "video_url", "video_url": {"url": ...}}`` and
``{"type": "video", "video": ...}`` (same two shapes). URLs are data:, http(s) or local
paths (see multimodal.fetch). Each becomes ``{"type": "image"}`` / ``{"type": "video"}``,
which VLM chat templates render as the family's placeholder markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlxserve.errors import InvalidRequest
from mlxserve.multimodal.fetch import fetch_media
from mlxserve.multimodal.media_config import MediaConfig
from mlxserve.multimodal.video import DecodedVideo, decode_video, resolve_video_sampling

_PART_KINDS = {"image_url": "image", "input_image": "image", "video_url": "video",
               "video": "video"}


@dataclass(frozen=True)
class MediaRef:
    kind: str  # "image" | "video"
    url: str
    part: str  # "messages[i].content[j]", for error messages


@dataclass(frozen=True)
class MediaRequestOptions:
    video_fps: float | None = None
    video_max_frames: int | None = None


def _url_of(part: dict, field_name: str, where: str) -> str:
    value = part.get(field_name)
    if isinstance(value, dict):
        value = value.get("url")
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{where}: a '{part['type']}' part needs a URL string",
                             param=where)
    return value


def extract_media(messages: Any) -> tuple[Any, list[MediaRef]]:
    """Messages with media parts replaced by placeholder parts, and the media in prompt
    order. Messages without media come back unchanged (the same objects)."""
    if not isinstance(messages, list):
        return messages, []
    refs: list[MediaRef] = []
    out = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list) or not any(
                isinstance(p, dict) and p.get("type") in (*_PART_KINDS, "image")
                for p in content):
            out.append(message)
            continue
        if message.get("role") != "user":
            raise InvalidRequest(f"messages[{i}]: images and videos are only accepted in "
                                 "user messages", param="messages")
        parts = []
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image":
                raise InvalidRequest(f"messages[{i}].content[{j}]: send images as "
                                     "'image_url' parts", param="messages")
            part_type = part.get("type") if isinstance(part, dict) else None
            kind = _PART_KINDS.get(part_type) if isinstance(part_type, str) else None
            if kind is None:
                parts.append(part)
                continue
            where = f"messages[{i}].content[{j}]"
            field_name = "image_url" if part["type"] == "input_image" else part["type"]
            refs.append(MediaRef(kind, _url_of(part, field_name, where), where))
            parts.append({"type": kind})
        out.append(dict(message, content=parts))
    return out, refs


def check_media_limits(refs: list[MediaRef], config: MediaConfig) -> None:
    images = sum(1 for r in refs if r.kind == "image")
    videos = len(refs) - images
    if images > config.max_images_per_request:
        raise InvalidRequest(f"the request has {images} images; at most "
                             f"{config.max_images_per_request} are accepted", param="messages")
    if videos > config.max_videos_per_request:
        raise InvalidRequest(f"the request has {videos} videos; at most "
                             f"{config.max_videos_per_request} are accepted", param="messages")


def load_media(refs: list[MediaRef], options: MediaRequestOptions, config: MediaConfig
               ) -> list[Any]:
    """Fetch and decode every media item, in prompt order: Pillow images and
    ``DecodedVideo`` clips (blocking: run it in a worker thread)."""
    from mlxserve.multimodal.image import decode_image  # lazy: Pillow is the vision extra

    sampling = resolve_video_sampling(options.video_fps, options.video_max_frames, config)
    decoded: list[Any] = []
    for ref in refs:
        data = fetch_media(ref.url, kind=ref.kind, part=ref.part, config=config).data
        if ref.kind == "image":
            decoded.append(decode_image(data, part=ref.part, config=config))
        else:
            decoded.append(decode_video(data, part=ref.part, sampling=sampling, config=config))
    return decoded


def arrange_for_model(messages: list, decoded: list[Any], native_video: bool
                      ) -> tuple[list, list[Any], list[DecodedVideo]]:
    """Images and videos for the encoder. A model without native video gets each video
    as its sampled frames: the video placeholder becomes one image placeholder a frame."""
    images = [d for d in decoded if not isinstance(d, DecodedVideo)]
    videos = [d for d in decoded if isinstance(d, DecodedVideo)]
    if native_video or not videos:
        return messages, images, videos
    pending = iter(decoded)
    images, out = [], []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            out.append(message)
            continue
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("image", "video"):
                parts.append(part)
                continue
            item = next(pending)
            frames = item.frames if isinstance(item, DecodedVideo) else [item]
            images += frames
            parts += [{"type": "image"} for _ in frames]
        out.append(dict(message, content=parts))
    return out, images, []
