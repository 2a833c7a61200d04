"""Image input: files, encoded bytes and numpy arrays → RGB uint8 (H, W, 3). numpy + OpenCV only.

Training decodes with the same function, so a device sees exactly the pixels training saw.

Arrays follow OpenCV's conventions: (H, W) grey, (H, W, 1) grey, (H, W, 3) BGR, (H, W, 4) BGRA
(alpha dropped). dtypes: uint8; uint16 (scaled by 1/257); float32/float64 in [0, 1].
Images over MAX_PIXELS are refused before anything is decoded or copied: encoded images by the
size their header declares (:mod:`.image_header`; a header it cannot read is refused), arrays by
their shape.
Anything else raises :class:`InvalidImageError` saying what was wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InvalidImageError
from .image_header import HeaderError, read_header

ImageInput = str | Path | bytes | bytearray | memoryview | np.ndarray

MIN_SIDE = 4  # a smaller image has no structure left to match; almost always a cropping bug
MAX_PIXELS = 50_000_000  # refused above this (as decoded): a 12000×12000 photo would take 3.5 GB
REDUCED_MIN_SIDE = 1024  # JPEGs are decoded at 1/2, 1/4 or 1/8 while the short side stays ≥ this

# A 1×1 GIF: OpenCV decodes GIF only from 4.11 (and only where built with it), so probe for it.
_GIF_1X1 = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff,\x00\x00\x00\x00"
            b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def _cv2():
    import cv2

    return cv2


def image_extensions() -> tuple[str, ...]:
    """Lower-case suffixes of the files OpenCV here decodes."""
    cv2 = _cv2()
    gif = cv2.imdecode(np.frombuffer(_GIF_1X1, np.uint8), cv2.IMREAD_COLOR) is not None
    return (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
            ".pbm", ".pgm", ".ppm", ".pnm") + ((".gif",) if gif else ())


def check_pixels(width: int, height: int, what: str, scale: int = 1, encoded: bool = True) -> None:
    """InvalidImageError when ``width``×``height`` pixels, taken at 1/``scale`` (a JPEG decoded
    at reduced size), are more than MAX_PIXELS; ``encoded``: an encoded image (else an array)."""
    if (width // scale) * (height // scale) > MAX_PIXELS:
        raise InvalidImageError(f"{what} is {width}×{height} pixels ({width * height / 1e6:.0f} MP); edgedml "
                                f"{'decodes' if encoded else 'takes'} at most {MAX_PIXELS / 1e6:.0f} MP"
                                f"{' (JPEGs at up to 1/8 size)' if encoded else ''}: downscale it first")


def _decode_flags(data: np.ndarray, what: str) -> int:
    """The imdecode flags for ``data``, from its header (read before anything is decoded): JPEGs
    above the size the network can use are decoded at reduced size; an image that would still
    decode to more than MAX_PIXELS, or whose header cannot be read, is refused."""
    cv2 = _cv2()
    try:
        kind, width, height = read_header(data)
    except HeaderError as exc:
        raise InvalidImageError(f"cannot decode {what}: {exc}") from exc
    scale = 1
    if kind == "jpeg":
        while scale < 8 and min(width, height) // (scale * 2) >= REDUCED_MIN_SIDE:
            scale *= 2
    check_pixels(width, height, what, scale)
    reduced = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    return reduced.get(scale, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)


def _decode(data: np.ndarray, what: str) -> np.ndarray:
    cv2 = _cv2()
    # COLOR|ANYDEPTH: 3 channels (grey expanded, alpha dropped), 16 bits kept so they can be
    # scaled, EXIF orientation applied (IMREAD_UNCHANGED would ignore it).
    flags = _decode_flags(data, what) if data.size else 0
    try:
        image = cv2.imdecode(data, flags) if data.size else None
    except cv2.error as exc:
        raise InvalidImageError(f"cannot decode {what}: {exc}") from exc
    if image is None:
        raise InvalidImageError(f"cannot decode {what}: it is empty, truncated or not an image OpenCV "
                                f"reads; re-save it as JPEG/PNG")
    return image


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3). Reads through ``np.fromfile`` so non-ASCII
    paths work. Raises :class:`InvalidImageError` naming the file."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InvalidImageError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    return _bgr_to_rgb_uint8(_decode(data, f"image {path}"), f"image {path}", allow_float=False)


def _bgr_to_rgb_uint8(image: np.ndarray, what: str, allow_float: bool = True) -> np.ndarray:
    cv2 = _cv2()
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InvalidImageError(f"{what} has shape {image.shape}; expected (H, W) grey, (H, W, 3) BGR "
                                f"or (H, W, 4) BGRA")
    check_pixels(image.shape[1], image.shape[0], what, encoded=False)  # before any conversion copies it
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=1.0 / 257.0)
    elif image.dtype in (np.float32, np.float64) and not allow_float:
        raise InvalidImageError(f"{what} has float pixels ({image.dtype}); convert it to 8-bit JPEG/PNG")
    elif image.dtype in (np.float32, np.float64):
        if not np.isfinite(image).all():
            raise InvalidImageError(f"{what} contains NaN or infinite values")
        if image.min() < 0 or image.max() > 1:
            raise InvalidImageError(f"{what} is a float array with values in [{image.min():.3g}, "
                                    f"{image.max():.3g}]; float images must be in [0, 1] (divide by 255)")
        image = np.round(image * 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InvalidImageError(f"{what} has dtype {image.dtype}; use uint8, uint16 or float32 in [0, 1]")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InvalidImageError(f"{what} is {w}×{h} pixels; at least {MIN_SIDE}×{MIN_SIDE} is needed")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def load_image(source: ImageInput) -> np.ndarray:
    """A path, encoded bytes (JPEG, PNG, ...) or a numpy array (OpenCV conventions, module doc)
    → RGB uint8 (H, W, 3)."""
    if isinstance(source, (str, Path)):
        return read_rgb(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _bgr_to_rgb_uint8(_decode(np.frombuffer(source, np.uint8), "the image bytes"), "the image bytes",
                                 allow_float=False)
    if isinstance(source, np.ndarray):
        if source.size == 0:
            raise InvalidImageError(f"the image array is empty (shape {source.shape})")
        return _bgr_to_rgb_uint8(source, f"the image array {source.shape} {source.dtype}")
    raise InvalidImageError(f"cannot read an image from {type(source).__name__}; pass a path, "
                            f"encoded bytes or a numpy array")
