"""Turn an image file into an upright 8-bit RGB image, or a clear `ImageDecodeError`.

Every image Foveal reads, for training and for prediction, goes through `load_rgb`, so that both
see exactly the same pixels:

* EXIF orientation is applied, so photos come out upright.
* Every Pillow mode becomes plain 8-bit RGB. 16-bit images are scaled (65535 -> 255), never
  saturated; transparency (alpha, LA, palette or tRNS transparency) is alpha-composited on
  `BACKGROUND`, white, so a fully transparent pixel is white whatever colour it hides.
* Only the first frame of a multi-frame file (GIF, TIFF, APNG, MPO) is used.
* Embedded ICC colour profiles are not applied: pixel values are used as stored.
* Decompression bombs are refused from the header, before any pixel is decoded, and so are images whose
  longer side is more than MAX_ASPECT_RATIO (50) times the shorter: a 1 x 1,000,000 strip passes the pixel
  limit but is no photo, and a classifier sees it as a smear whatever it holds.
* Resizing (the shorter side to size / crop_pct, bilinear or bicubic, then the center crop) costs what
  the output costs: only the crop is resampled, never the whole enlarged image (`resize.resize_and_crop`).
* Any failure Pillow can be expected to raise on a bad file becomes an `ImageDecodeError` that names
  the file and says what is wrong. Files are only ever opened read-only.
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat
import threading
import warnings
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from foveal.data.resize import Interpolation, resize_and_crop
from foveal.errors import ConfigError, DataError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

DEFAULT_MAX_PIXELS: int = 89_478_485
"""Largest image (width x height) decoded by default; Pillow's own default `MAX_IMAGE_PIXELS`."""

MAX_ASPECT_RATIO: float = 50.0
"""Largest ratio of an image's longer side to its shorter one decoded by default: far beyond camera frames
(4:3 to 21:9) and most stitched panoramas, while a strip such as 1 x 1,000,000 (within the pixel limit)
is refused before its pixels are read. Center-cropped to a square, a 50:1 image keeps 2% of its area."""

BACKGROUND: tuple[int, int, int] = (255, 255, 255)
"""Colour that transparent pixels are composited onto (white)."""

# The Pillow decoders for the formats in IMAGE_EXTENSIONS (PPM also reads PGM/PBM; MPO is how Pillow opens
# multi-picture camera JPEGs). Restricting Image.open to them keeps files in exotic formats (EPS, which
# runs Ghostscript, ICO, ...) away from less-tested decoders, whatever their name says.
_DECODER_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

# What Pillow's own fuzzers treat as the expected ways for a bad file to fail. Anything else escaping
# from Pillow is a bug in Pillow and is left to surface as such.
_EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes UnidentifiedImageError, FileNotFoundError and truncated data
    SyntaxError,
    ValueError,
    MemoryError,
    NotImplementedError,
    OverflowError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

# warnings.catch_warnings() swaps the process-wide filter list and restores it on exit, so two threads
# inside it at once can leave each other's filter behind for good (folders.decode_files decodes on a
# thread pool). The lock serialises only Image.open, which reads the header, not the pixel data.
_OPEN_LOCK = threading.Lock()

# A path, an open binary file, or the bytes of an image file.
ImageSource = str | os.PathLike | BinaryIO | bytes | bytearray | memoryview


class ImageDecodeError(DataError):
    """An image file that cannot be decoded.

    Attributes:
        path: The file, as given (or "<stream>"/"<bytes>" for in-memory data).
        reason: Short human-readable cause, e.g. "truncated file" or "not an image".
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[ImageDecodeError], tuple[str, str]]:
        # Keeps the two-argument constructor working across pickling (process pools).
        return (type(self), (self.path, self.reason))


def is_image_file(path: str | os.PathLike[str] | os.PathLike[bytes] | bytes) -> bool:
    """Whether `path` has one of the IMAGE_EXTENSIONS (case-insensitive); the file is not opened.

    Args:
        path: A file name or path.

    Returns:
        True for names such as "cat.JPG" or "scan.tiff".
    """
    return os.path.splitext(os.fsdecode(os.fspath(path)))[1].lower() in IMAGE_EXTENSIONS


def load_rgb(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> Image.Image:
    """Open and fully decode an image, returning it upright as 8-bit RGB.

    Transparent areas are composited on BACKGROUND (white). 16-bit images are scaled to 8 bits.
    Mode "I" (32-bit integer) and "F" (float) images are scaled by the smallest range that holds
    their maximum: [0, 1] (float only), [0, 255], [0, 65535], or else their own maximum (which then
    maps to 255); negative values and NaN become 0.

    Args:
        source: A path, a binary file object (read from its start, left open) or the bytes of an
            image file. The file is opened read-only and never modified.
        max_pixels: Refuse images with more than this many pixels (width x height), judged from the
            header before decoding. Pillow's hard limit (2 x Image.MAX_IMAGE_PIXELS) applies too.
        max_aspect_ratio: Refuse images whose longer side is more than this many times the shorter,
            judged from the header before decoding; math.inf turns the check off.

    Returns:
        A new RGB image, independent of the file.

    Raises:
        ImageDecodeError: The file is missing, empty, not an image, truncated, corrupt, in an
            unsupported format, too large or too thin.
        ConfigError: max_pixels is below 1 or max_aspect_ratio below 1.
    """
    if max_pixels < 1:
        raise ConfigError(f"max_pixels must be at least 1, got {max_pixels}.")
    if not max_aspect_ratio >= 1:  # NaN too
        raise ConfigError(f"max_aspect_ratio must be at least 1, got {max_aspect_ratio}.")
    fp, name = _resolve_source(source)
    try:
        if _is_empty(fp):
            raise ImageDecodeError(name, "empty file (0 bytes)")
        with _open_checked(fp, name, max_pixels, max_aspect_ratio) as image:
            # Image.open only reads the header; truncated or corrupt data fails here, so decode fully
            # inside the try. This reads the first frame, which is the one used for multi-frame files.
            image.load()
            upright = ImageOps.exif_transpose(image)
        return _to_rgb(upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(name, _bomb_reason(error, max_pixels)) from error
    except _EXPECTED_ERRORS as error:
        raise ImageDecodeError(name, _reason(error)) from error


def decode_image(
    source: ImageSource,
    size: int | None = None,
    *,
    interpolation: Interpolation = "bilinear",
    crop_pct: float = 1.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> torch.Tensor:
    """Decode an image file to a uint8 tensor, optionally resized and center-cropped to a square.

    A model's own resize is its `Preprocessing.decode`, which calls this with the model's settings.

    Args:
        source: As for `load_rgb`.
        size: When given, the output is size x size (see `resize_and_crop`); when None, native size.
        interpolation: The resize's filter (with a size only).
        crop_pct: Share of the resized shorter side the center crop keeps (with a size only).
        max_pixels: As for `load_rgb`.
        max_aspect_ratio: As for `load_rgb`.

    Returns:
        A contiguous uint8 tensor of shape (3, H, W), channels in RGB order.

    Raises:
        ImageDecodeError: As for `load_rgb`.
        ConfigError: As for `load_rgb`, or size is not a positive integer, or interpolation or crop_pct
            is out of range.
    """
    image = load_rgb(source, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    if size is not None:
        image = resize_and_crop(image, size, interpolation=interpolation, crop_pct=crop_pct)
    array = np.array(image, dtype=np.uint8)  # a writable copy, so torch does not share PIL's buffer
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _resolve_source(source: ImageSource) -> tuple[str | bytes | BinaryIO, str]:
    """Return what to hand to Image.open and the name to use in error messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), "<bytes>"
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        return source, name if isinstance(name, str) else "<stream>"  # type: ignore[return-value]
    path = os.fspath(source)
    return path, os.fsdecode(path)


def _is_empty(fp: str | bytes | BinaryIO) -> bool:
    """Whether a regular file or a seekable stream holds no bytes at all.

    Raises:
        OSError: The path cannot be stat'ed (e.g. FileNotFoundError).
    """
    if isinstance(fp, (str, bytes)):
        info = os.stat(fp)
        return stat.S_ISREG(info.st_mode) and info.st_size == 0
    try:
        start = fp.tell()
        end = fp.seek(0, os.SEEK_END)
        fp.seek(start)
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        return False  # not seekable: Pillow reads it whole and reports what it finds
    return end == 0


def _open_checked(
    fp: str | bytes | BinaryIO, name: str, max_pixels: int, max_aspect_ratio: float
) -> ImageFile.ImageFile:
    """Image.open, refusing images over `max_pixels` or thinner than `max_aspect_ratio` from the header alone.

    Pillow raises DecompressionBombError above 2 x MAX_IMAGE_PIXELS but only warns between 1x and 2x;
    the warning is made an error here, locally, when `max_pixels` is within Pillow's limit (otherwise
    the caller asked for more than Pillow's default and our own check below decides).
    """
    pillow_limit = Image.MAX_IMAGE_PIXELS
    action = "error" if pillow_limit is None or max_pixels <= pillow_limit else "ignore"
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter(action, Image.DecompressionBombWarning)
        image = Image.open(fp, formats=_available_formats())
    width, height = image.size
    reason = None
    if width * height > max_pixels:
        reason = f"decompression bomb: {width * height} pixels > limit {max_pixels}"
    elif max(width, height) > max_aspect_ratio * min(width, height):
        reason = (
            f"extreme aspect ratio {width} x {height} (longer side more than {max_aspect_ratio:g} times "
            "the shorter); not a photo: crop it or resize it"
        )
    if reason is not None:
        image.close()
        raise ImageDecodeError(name, reason)
    return image


@functools.cache
def _available_formats() -> tuple[str, ...]:
    """The _DECODER_FORMATS this Pillow build has (Image.open raises KeyError for a missing one)."""
    Image.init()
    return tuple(f for f in _DECODER_FORMATS if f in Image.OPEN)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded image of any Pillow mode to 8-bit RGB (see load_rgb for the rules)."""
    if image.mode.startswith(("I", "F")):  # I, I;16, I;16B, I;16L, I;16N, F
        return _high_depth_to_rgb(image)
    if _has_transparency(image):
        rgba = image.convert("RGBA")  # applies palette alpha, tRNS and "transparency" colour keys
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX


def _has_transparency(image: Image.Image) -> bool:
    """Whether the image carries any alpha: an alpha band, a transparency key or a palette with alpha."""
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        return True
    return image.mode == "P" and image.palette is not None and image.palette.mode == "RGBA"


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit integer or float single-channel image to 8-bit grey RGB.

    A plain convert("RGB") clips these to 255 instead of scaling, turning most 16-bit photos white.
    """
    values = np.asarray(image).astype(np.float32)  # native byte order, whatever I;16B/L was
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    np.maximum(values, 0.0, out=values)
    grey = np.rint(values * (255.0 / _full_scale(image.mode, values))).clip(0, 255).astype(np.uint8)
    key = image.info.get("transparency")
    if isinstance(key, (int, float)):  # 16-bit PNG tRNS: pixels equal to this value are transparent
        transparent = np.asarray(image) == key
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        rgb[transparent] = BACKGROUND
        return Image.fromarray(rgb, "RGB")
    return Image.fromarray(grey, "L").convert("RGB")


def _full_scale(mode: str, values: np.ndarray) -> float:
    """The value that maps to 255: the bit depth for I;16, else the smallest range holding the peak."""
    if mode.startswith("I;16"):
        return 65535.0
    peak = float(values.max()) if values.size else 0.0
    if mode == "F" and peak <= 1.0:
        return 1.0
    for full in (255.0, 65535.0):
        if peak <= full:
            return full
    return peak


def _reason(error: BaseException) -> str:
    """A short, human-readable reason for one of _EXPECTED_ERRORS."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image (unknown or unsupported format)"
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, MemoryError):
        return "not enough memory to decode"
    detail = _first_line(error)
    if "truncated" in detail.lower():
        return "truncated file"
    if "broken data stream" in detail:
        return "truncated or corrupt file"
    if isinstance(error, OSError) and error.strerror:  # an operating-system error while reading
        return f"cannot read file ({error.strerror})"
    if isinstance(error, NotImplementedError):
        return f"unsupported image ({detail})" if detail else "unsupported image"
    if isinstance(error, ValueError):  # mostly nonsense field values in a damaged header
        return f"corrupt or unsupported image ({detail})" if detail else "corrupt or unsupported image"
    return f"corrupt image ({detail})" if detail else "corrupt image"


def _bomb_reason(error: BaseException, max_pixels: int) -> str:
    """Reason for Pillow's decompression-bomb error or (promoted) warning, in our own words."""
    numbers = [int(n) for n in re.findall(r"\d+", str(error))]
    if len(numbers) < 2:
        return f"decompression bomb: {_first_line(error)}"
    pixels, pillow_limit = numbers[0], numbers[1]
    return f"decompression bomb: {pixels} pixels > limit {min(max_pixels, pillow_limit)}"


def _first_line(error: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message, shortened to `limit` characters."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."
