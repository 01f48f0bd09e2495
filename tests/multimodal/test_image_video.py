"""Image and video decoding with generated media: formats, limits, sampling."""

from __future__ import annotations

import io

import numpy as np
import pytest
from media_samples import gradient_image, image_bytes, video_bytes
from PIL import Image

from mlxserve.errors import InvalidRequest
from mlxserve.multimodal.image import decode_image
from mlxserve.multimodal.media_config import MediaConfig
from mlxserve.multimodal.video import (VideoSampling, decode_video, resolve_video_sampling,
                                       sample_frame_indices)

PART = "messages[1].content[0]"
CONFIG = MediaConfig()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_formats_decode_to_rgb(fmt):
    img = decode_image(image_bytes(gradient_image(40, 30), fmt), part=PART, config=CONFIG)
    assert img.mode == "RGB" and img.size == (40, 30)


def test_transparency_goes_on_white():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    img = decode_image(image_bytes(rgba), part=PART, config=CONFIG)
    assert img.getpixel((0, 0)) == (255, 255, 255)
    gray = decode_image(image_bytes(Image.new("L", (5, 5), 7)), part=PART, config=CONFIG)
    assert gray.mode == "RGB" and gray.getpixel((1, 1)) == (7, 7, 7)


def test_exif_orientation_applied():
    img = gradient_image(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert decode_image(buf.getvalue(), part=PART, config=CONFIG).size == (20, 40)


def _error(data: bytes, config: MediaConfig = CONFIG) -> str:
    with pytest.raises(InvalidRequest) as info:
        decode_image(data, part=PART, config=config)
    assert info.value.message.startswith(PART)
    return info.value.message


def test_decompression_bomb_refused_before_decode():
    bomb = image_bytes(Image.new("1", (12000, 12000)))  # 144 Mpx in a few KiB
    assert len(bomb) < 100_000
    assert "12000x12000" in _error(bomb, MediaConfig(max_image_pixels=10_000_000))


def test_bad_images():
    assert "not a decodable image" in _error(b"definitely not an image")
    png = image_bytes(gradient_image(64, 64))
    assert "corrupt or truncated" in _error(png[: len(png) // 2])
    ico = image_bytes(gradient_image(16, 16), "ICO")
    assert "format ICO is not supported" in _error(ico)


def test_sampling_resolution_and_validation():
    assert resolve_video_sampling(None, None, CONFIG) == VideoSampling(2.0, 64)
    assert resolve_video_sampling(1, 8, CONFIG) == VideoSampling(1.0, 8)
    for fps, frames, param in ((0, 4, "video_fps"), (float("nan"), 4, "video_fps"),
                               (2, 0, "video_max_frames"), (2, 10_000, "video_max_frames"),
                               (2, 2.5, "video_max_frames")):
        with pytest.raises(InvalidRequest) as info:
            resolve_video_sampling(fps, frames, CONFIG)
        assert info.value.param == param


def test_frame_indices():
    # 10 s at 30 fps, sampled at 2 fps: 20 frames, evenly spread.
    idx = sample_frame_indices(300, 30.0, VideoSampling(2.0, 64))
    assert len(idx) == 20 and idx[0] == 0 and idx[1] == 15
    assert len(sample_frame_indices(300, 30.0, VideoSampling(2.0, 8))) == 8
    assert sample_frame_indices(3, 30.0, VideoSampling(1.0, 8)) == [0]  # shorter than 1/fps


def test_video_decode_and_sample():
    clip = video_bytes(frames=30, fps=10.0)  # 3 s
    video = decode_video(clip, part=PART, sampling=VideoSampling(2.0, 64), config=CONFIG)
    assert len(video.frames) == 6
    assert video.frames[0].shape == (48, 64, 3) and video.frames[0].dtype == np.uint8
    assert video.timestamps == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert video.duration_s == pytest.approx(3.0)
    capped = decode_video(clip, part=PART, sampling=VideoSampling(10.0, 4), config=CONFIG)
    assert len(capped.frames) == 4
    # The moving square makes sampled frames differ.
    assert not np.array_equal(video.frames[0], video.frames[-1])


def test_video_limits_and_garbage():
    clip = video_bytes(frames=30, fps=10.0)
    with pytest.raises(InvalidRequest, match="lasts 3.0 s"):
        decode_video(clip, part=PART, sampling=VideoSampling(2.0, 8),
                     config=MediaConfig(max_video_duration_s=2.0))
    with pytest.raises(InvalidRequest, match="64x48 pixels"):
        decode_video(clip, part=PART, sampling=VideoSampling(2.0, 8),
                     config=MediaConfig(max_image_pixels=1000))
    with pytest.raises(InvalidRequest, match="not a decodable video") as info:
        decode_video(b"\x00garbage" * 100, part=PART, sampling=VideoSampling(2.0, 8),
                     config=CONFIG)
    assert info.value.message.startswith(PART)
