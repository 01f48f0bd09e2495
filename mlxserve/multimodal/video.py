"""Decode a video and sample frames at a requested rate, capped at a frame count.

OpenCV (FFmpeg inside its wheels) reads the container from a temporary file. Limits:
bytes (at fetch), duration, frame size in pixels, frames returned. Frames are RGB uint8
numpy arrays with their timestamps in seconds. No MLX import.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from mlxserve.errors import InvalidRequest
from mlxserve.multimodal.media_config import MediaConfig


class VideoDecodeError(InvalidRequest):
    code = "invalid_video"


@dataclass(frozen=True)
class VideoSampling:
    fps: float
    max_frames: int


@dataclass
class DecodedVideo:
    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB
    timestamps: list[float]  # seconds from the start, one per frame
    source_fps: float
    duration_s: float
    sampled_fps: float  # the rate the frames actually represent
    content_hash: str = field(default="")


def resolve_video_sampling(fps: float | None, max_frames: int | None,
                           config: MediaConfig) -> VideoSampling:
    """Per-request values over server defaults, validated."""
    fps = config.video_fps if fps is None else fps
    max_frames = config.video_max_frames if max_frames is None else max_frames
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (
            math.isfinite(fps) and 0 < fps <= 60):
        raise InvalidRequest("'video_fps' must be a number in (0, 60]", param="video_fps")
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or not (
            1 <= max_frames <= config.video_max_frames_limit):
        raise InvalidRequest(f"'video_max_frames' must be an integer between 1 and "
                             f"{config.video_max_frames_limit}", param="video_max_frames")
    return VideoSampling(float(fps), max_frames)


def sample_frame_indices(frame_count: int, source_fps: float, sampling: VideoSampling) -> list[int]:
    """Indices of the frames to keep: ``sampling.fps`` per second, at most max_frames,
    spread evenly over the whole clip."""
    duration = frame_count / source_fps
    wanted = max(1, min(sampling.max_frames, int(math.floor(duration * sampling.fps + 1e-6))))
    wanted = min(wanted, frame_count)
    step = frame_count / wanted
    return sorted({min(frame_count - 1, int(i * step)) for i in range(wanted)})


def decode_video(data: bytes, *, part: str, sampling: VideoSampling,
                 config: MediaConfig) -> DecodedVideo:
    import cv2  # lazy: only media requests need it

    def bad(why: str) -> VideoDecodeError:
        return VideoDecodeError(f"{part}: {why}", param=part)

    fd, path = tempfile.mkstemp(prefix="mlxserve-video-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        capture = cv2.VideoCapture(path)
        try:
            if not capture.isOpened():
                raise bad("the data is not a decodable video")
            source_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            if not (math.isfinite(source_fps) and source_fps > 0) or count <= 0:
                raise bad("the video has no readable frames or frame rate")
            if width * height > config.max_image_pixels:
                raise bad(f"video frames are {width}x{height} pixels, more than the limit "
                          f"of {config.max_image_pixels}")
            duration = count / source_fps
            if duration > config.max_video_duration_s:
                raise bad(f"the video lasts {duration:.1f} s, more than the limit of "
                          f"{config.max_video_duration_s:g} s")
            indices = sample_frame_indices(count, source_fps, sampling)
            frames, kept = _read_frames(capture, indices)
        finally:
            capture.release()
    finally:
        os.unlink(path)
    if not frames:
        raise bad("no frame of the video could be decoded")
    timestamps = [i / source_fps for i in kept]
    sampled_fps = len(frames) / duration if duration > 0 else sampling.fps
    return DecodedVideo(frames, timestamps, source_fps, duration, sampled_fps)


def _read_frames(capture, indices: list[int]) -> tuple[list[np.ndarray], list[int]]:
    """Read sequentially (grab is cheap, retrieve decodes colour) the frames at indices."""
    import cv2

    wanted = set(indices)
    frames: list[np.ndarray] = []
    kept: list[int] = []
    last = indices[-1]
    for index in range(last + 1):
        if not capture.grab():
            break
        if index in wanted:
            ok, frame = capture.retrieve()
            if ok and frame is not None:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                kept.append(index)
    return frames, kept
