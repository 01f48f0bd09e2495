"""Decode one image safely: format allow-list, pixel limit read from the header before
the full decode (decompression bombs), EXIF orientation, RGB output.

Pure Python + Pillow: no MLX import.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from mlxserve.errors import InvalidRequest
from mlxserve.multimodal.media_config import MediaConfig

SUPPORTED_IMAGE_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF"})


class ImageDecodeError(InvalidRequest):
    code = "invalid_image"


def decode_image(data: bytes, *, part: str, config: MediaConfig) -> Image.Image:
    """Return ``data`` as an RGB Pillow image (first frame of an animation)."""
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below decides; Pillow's global one only warns here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageDecodeError(f"{part}: the image has more pixels than the limit of "
                               f"{config.max_image_pixels}", param=part) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ImageDecodeError(f"{part}: the data is not a decodable image", param=part) from None
    if image.format not in SUPPORTED_IMAGE_FORMATS:
        raise ImageDecodeError(
            f"{part}: image format {image.format} is not supported (use "
            f"{', '.join(sorted(SUPPORTED_IMAGE_FORMATS - {'MPO'}))})", param=part)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{part}: the image has no pixels", param=part)
    if width * height > config.max_image_pixels:
        raise ImageDecodeError(
            f"{part}: the image is {width}x{height} pixels, more than the limit of "
            f"{config.max_image_pixels}", param=part)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise ImageDecodeError(f"{part}: the image data is corrupt or truncated",
                               param=part) from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
