"""Image files (PNG, JPEG, anything Pillow reads) as the 28 x 28 raw pixels the model takes, prepared like MNIST.

MNIST's digits were made this way (LeCun et al.): the scanned digit was scaled to fit a 20 x 20 box keeping its
aspect ratio (anti-aliased, hence grey levels), then pasted into a 28 x 28 field so that its centre of mass sits
at the field's centre, light digit on a dark background. `mnist_pixels` does the same to a photo or a drawing:

1. grayscale (luma); transparency is flattened onto white, 16-bit images are scaled to 0-255;
2. the background is the median of the border pixels; if it is nearer the image's lightest shade than its
   darkest, the image is dark ink on light paper and is inverted;
3. each pixel becomes an ink level, 0 for the background and 1 for the strongest ink; a noise floor (8 times
   the border's RMS deviation from the background, at most a quarter of the range) is subtracted, so paper
   texture and JPEG noise are not ink, and faint pixels not connected to strong ink (specks) are dropped;
4. the image is cropped to the bounding box of the remaining ink and its longer side is scaled to 20 pixels
   (Lanczos, keeping the aspect ratio), then stretched so the strongest ink is 255 again, as in MNIST;
5. the box is pasted into 28 x 28 with its centre of mass at pixel (14, 14), rounded to whole pixels, as
   MNIST's digits are (their centres of mass lie within half a pixel of (14, 14)).

What this assumes of an image: it holds one digit, upright; the digit is surrounded by background, so most of
the border is background (a digit cropped so tightly that it fills the border is misread); the background is
roughly even (a shadow across a photo becomes ink); the strokes are not hairlines on a large image (a stroke a
pixel wide on a 1000-pixel photo is faint after scaling, even stretched). A clean 28 x 28 MNIST image comes back
as itself (each pixel within 2 of the original: the strongest ink is stretched to 255), unless its digit
touches the border (about 1 % of MNIST), where the noise floor trims the faintest pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

FIELD_SIZE = 28
BOX_SIZE = 20
# Where MNIST puts a digit's centre of mass, in pixel indices (row, column): the middle of the 28 x 28 field.
CENTRE = FIELD_SIZE / 2
PIXEL_MAX = 255.0
# The background's noise floor, in multiples of the border's RMS deviation from the background (JPEG ringing near
# the strokes is stronger than the noise the border shows); and the most of the ink range it may take: a border
# pixel further from the background is ink, and a floor this high would erase a pencil's faint strokes.
NOISE_MULTIPLE = 8.0
MAX_NOISE_LEVEL = 0.25
# A faint pixel is ink only if it is connected to a pixel at least this strong (a share of the strongest ink).
STRONG_INK = 0.25
# Shades closer than this (on 0-255) are one shade: an image with no wider range has no digit to find.
MIN_CONTRAST = 1.0
SIXTEEN_BIT_MAX = 65535.0


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file, the problem and the fix."""


def load_digits(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """The images at `paths` as MNIST pixels: uint8 of shape (n, 28, 28), light digit on dark."""
    if not paths:
        return np.zeros((0, FIELD_SIZE, FIELD_SIZE), dtype=np.uint8)
    return np.stack([load_digit(path) for path in paths])


def load_digit(path: str | os.PathLike) -> np.ndarray:
    """The image at `path` as MNIST pixels: uint8 of shape (28, 28), light digit on dark."""
    try:
        return mnist_pixels(read_grayscale(path))
    except ImageError as error:
        raise ImageError(f"{path}: {error}") from None


def read_grayscale(path: str | os.PathLike) -> np.ndarray:
    """The image at `path` as float64 grayscale 0-255 of shape (height, width); ImageError if it is unreadable."""
    try:
        with Image.open(path) as opened:
            # Phones store photos sideways with an EXIF note to turn them; the digit must be upright.
            image = ImageOps.exif_transpose(opened)
            return grayscale(image)
    except FileNotFoundError:
        raise ImageError("no such file; fix: check the path (relative to the current folder)") from None
    except IsADirectoryError:
        raise ImageError("is a folder, not an image file; fix: pass the image files inside it") from None
    except PermissionError:
        raise ImageError("cannot be read (permission denied); fix: make the file readable") from None
    except UnidentifiedImageError:
        raise ImageError("is not an image (Pillow cannot identify it); fix: pass a PNG or JPEG file") from None
    except Image.DecompressionBombError:
        raise ImageError("is too large to be a picture of one digit; fix: scale it down or crop it") from None
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow reports a truncated or corrupt file from its decoders with these.
        raise ImageError(f"is damaged or unsupported ({error}); fix: re-save it as PNG or JPEG") from None


def grayscale(image: Image.Image) -> np.ndarray:
    """`image` as float64 luma 0-255, with transparency flattened onto white and 16-bit depth scaled down."""
    if image.mode.startswith("I;16") or image.mode == "I":
        # Pillow's conversion to 8 bits clips 16-bit values at 255 rather than scaling them.
        values = np.asarray(image, dtype=np.float64)
        return values * (PIXEL_MAX / SIXTEEN_BIT_MAX) if values.max() > PIXEL_MAX else values
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float64), 0.0, PIXEL_MAX)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        # Transparent pixels carry arbitrary colour (often black); as drawn on a page, they show as white.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.asarray(image.convert("L"), dtype=np.float64)


def mnist_pixels(gray: np.ndarray) -> np.ndarray:
    """A grayscale image (height, width), values 0-255, as MNIST pixels: uint8 (28, 28), light digit on dark."""
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a 2-D grayscale image, got an array of shape {gray.shape}")
    levels = ink_levels(gray)
    rows = np.flatnonzero(levels.any(axis=1))
    columns = np.flatnonzero(levels.any(axis=0))
    digit = levels[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    return centred(fit_box(digit))


def ink_levels(gray: np.ndarray) -> np.ndarray:
    """How much ink each pixel holds, 0 (background) to 1 (the strongest ink), whichever way round the image is.

    Raises ImageError when the image is one shade, so has no digit in it.
    """
    darkest, lightest = float(gray.min()), float(gray.max())
    if lightest - darkest < MIN_CONTRAST:
        raise ImageError("has no digit: every pixel is the same shade; fix: pass a picture of a digit")
    background = float(np.median(border_of(gray)))
    # On a tie the image is taken as MNIST's own polarity, light on dark.
    if lightest - background < background - darkest:
        levels = (background - gray) / (background - darkest)
    else:
        levels = (gray - background) / (lightest - background)
    # The border's deviations from the background, ink excepted (a digit may touch the border), measure the
    # noise: paper texture, sensor noise, JPEG artefacts. A generous multiple of it is background too.
    deviations = np.abs(border_of(levels))
    deviations = deviations[deviations <= MAX_NOISE_LEVEL]
    noise_floor = min(NOISE_MULTIPLE * float(np.sqrt(np.mean(deviations**2))), MAX_NOISE_LEVEL)
    levels = np.clip((levels - noise_floor) / (1.0 - noise_floor), 0.0, 1.0)
    # Faint pixels count only when they touch strong ink: specks and JPEG ringing away from the strokes would
    # otherwise stretch the digit's bounding box, while a stroke's anti-aliased edge is kept.
    regions, _ = ndimage.label(levels > 0, structure=np.ones((3, 3)))
    inked = np.unique(regions[levels > STRONG_INK])
    return np.where(np.isin(regions, inked[inked > 0]), levels, 0.0)


def border_of(image: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels, each once."""
    return np.concatenate([image[0, :], image[-1, :], image[1:-1, 0], image[1:-1, -1]])


def fit_box(digit: np.ndarray) -> np.ndarray:
    """Ink levels cropped to the digit, scaled so the longer side is 20 pixels, as rounded 0-255 values."""
    height, width = digit.shape
    scale = BOX_SIZE / max(height, width)
    size = (max(1, int(width * scale + 0.5)), max(1, int(height * scale + 0.5)))
    # Mode "F" keeps the levels as floats through the resampling; Pillow returns a copy when the size is the same.
    resized = Image.fromarray((digit * PIXEL_MAX).astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    box = np.clip(np.asarray(resized, dtype=np.float64), 0.0, PIXEL_MAX)
    # Shrinking thins the strokes' peaks; MNIST's strokes reach full intensity, so ours are stretched back to it.
    box = box * (PIXEL_MAX / box.max())
    return np.rint(box)


def centred(box: np.ndarray) -> np.ndarray:
    """`box` (at most 20 x 20) pasted into a dark 28 x 28 field with its centre of mass at (14, 14), as uint8."""
    height, width = box.shape
    total = box.sum()
    row_mass = (box.sum(axis=1) * np.arange(height)).sum() / total
    column_mass = (box.sum(axis=0) * np.arange(width)).sum() / total
    # Whole-pixel shifts, as MNIST's centres of mass show; clipped so a lopsided digit stays whole in the field.
    top = min(max(int(np.floor(CENTRE + 0.5 - row_mass)), 0), FIELD_SIZE - height)
    left = min(max(int(np.floor(CENTRE + 0.5 - column_mass)), 0), FIELD_SIZE - width)
    field = np.zeros((FIELD_SIZE, FIELD_SIZE), dtype=np.uint8)
    field[top : top + height, left : left + width] = box.astype(np.uint8)
    return field
