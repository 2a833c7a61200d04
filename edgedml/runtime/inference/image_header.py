"""The size an encoded image declares, read from its header without decoding (stdlib only).

The decode guard (:mod:`.image`) refuses an image too large to decode *before* OpenCV allocates
it, so it needs every format's width and height up front. OpenCV picks the decoder from the
content, not the file name, so each format it may pick is recognised by its signature here:

- PNG (IHDR), JPEG (the frame header, found by walking the markers wherever it lies: comment
  and APP segments may come first), BMP/DIB (both header kinds, top-down rows), TIFF (the first
  IFD's ImageWidth and ImageLength, either byte order, classic and BigTIFF; float and
  over-16-bit samples refused), WebP (VP8, VP8L and
  VP8X), PNM (P1–P6, comments included) and PAM (P7), GIF (the screen and the first frame);
- refused without decoding: float formats (PFM, Radiance HDR: their pixels would be refused after
  decoding anyway) and everything else (JPEG 2000, AVIF, Sun raster, OpenEXR, …), whose headers
  are not read here. An image this module cannot size is never decoded: the guard fails closed.
"""

from __future__ import annotations

import re

FLOAT_FORMATS = {b"PF": "PFM", b"Pf": "PFM", b"#?RADIANCE": "Radiance HDR", b"#?RGBE": "Radiance HDR"}
READ = "JPEG, PNG, BMP, TIFF, WebP, PNM/PAM, GIF"  # what read_header sizes: named in its refusals


class HeaderError(ValueError):
    """The image's header cannot be read, or its format is one edgedml does not decode."""


def _u(data, start: int, size: int, order: str = "big") -> int:
    if start < 0 or start + size > len(data):
        raise HeaderError("its header is truncated")
    return int.from_bytes(bytes(data[start:start + size]), order)


def _starts(data, prefix: bytes) -> bool:
    return bytes(data[:len(prefix)]) == prefix


def png_size(data) -> tuple[int, int]:
    if bytes(data[12:16]) != b"IHDR":
        raise HeaderError("the PNG does not start with its IHDR chunk")
    return _u(data, 16, 4), _u(data, 20, 4)


_SOF = {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xDE}  # frames (and DHP)
_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}  # markers without a length


def jpeg_size(data) -> tuple[int, int]:
    """Walk the marker segments from SOI to the frame header, however many come before it."""
    i = 2
    while True:
        if i + 1 >= len(data):
            raise HeaderError("the JPEG ends before its frame header")
        if data[i] != 0xFF:
            raise HeaderError(f"the JPEG has no marker at byte {i}")
        while i + 1 < len(data) and data[i + 1] == 0xFF:  # fill bytes
            i += 1
        marker = data[i + 1] if i + 1 < len(data) else None
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA, None):
            raise HeaderError("the JPEG has no frame header before its image data")
        length = _u(data, i + 2, 2)
        if length < 2:
            raise HeaderError(f"the JPEG has a segment of length {length}")
        if marker in _SOF:
            return _u(data, i + 7, 2), _u(data, i + 5, 2)
        i += 2 + length


def bmp_size(data) -> tuple[int, int]:
    header = _u(data, 14, 4, "little")
    if header == 12:  # OS/2 BITMAPCOREHEADER: unsigned 16-bit sides
        return _u(data, 18, 2, "little"), _u(data, 20, 2, "little")
    if header < 16:
        raise HeaderError(f"the BMP has an unknown header of {header} bytes")
    width, height = (side - (1 << 32) if side >> 31 else side for side in (_u(data, 18, 4, "little"),
                                                                          _u(data, 22, 4, "little")))
    if width < 0:
        raise HeaderError(f"the BMP has a negative width ({width})")
    return width, abs(height)  # a negative height: rows stored top-down


_TIFF_TYPES = {3: 2, 4: 4, 16: 8}  # SHORT, LONG, LONG8: the integer types these tags may have
_TIFF_TAGS = {256: "ImageWidth", 257: "ImageLength", 258: "BitsPerSample", 339: "SampleFormat"}


def _tiff_values(data, at: int, order: str, big: bool) -> list[int]:
    """An IFD entry's integers (at most 16), inline or at the offset the entry gives."""
    tag, kind = _u(data, at, 2, order), _u(data, at + 2, 2, order)
    if kind not in _TIFF_TYPES:
        raise HeaderError(f"the TIFF gives {_TIFF_TAGS[tag]} as type {kind}, not an integer")
    count = _u(data, at + 4, 8 if big else 4, order)
    size, inline = _TIFF_TYPES[kind], at + (12 if big else 8)
    start = inline if count * size <= (8 if big else 4) else _u(data, inline, 8 if big else 4, order)
    return [_u(data, start + k * size, size, order) for k in range(min(count, 16))]


def tiff_size(data) -> tuple[int, int]:
    """ImageWidth and ImageLength of the first IFD (the image OpenCV decodes); a TIFF of float
    or over-16-bit samples is refused here, as its pixels would be after decoding."""
    order = "little" if _starts(data, b"II") else "big"
    big = _u(data, 2, 2, order) == 43
    if big and (_u(data, 4, 2, order) != 8 or _u(data, 6, 2, order) != 0):
        raise HeaderError("the BigTIFF header has an unknown offset size")
    ifd = _u(data, 8, 8, order) if big else _u(data, 4, 4, order)
    count = _u(data, ifd, 8, order) if big else _u(data, ifd, 2, order)
    entry, first = (20, ifd + 8) if big else (12, ifd + 2)
    if count * entry > len(data):
        raise HeaderError("the TIFF directory is truncated")
    tags: dict[int, list[int]] = {}
    for k in range(count):
        at = first + k * entry
        tag = _u(data, at, 2, order)
        if tag in _TIFF_TAGS:  # a tag given twice: the larger values count, whichever a decoder takes
            values = _tiff_values(data, at, order, big)
            tags[tag] = max(tags.get(tag, values), values)
    if not tags.get(256) or not tags.get(257):
        raise HeaderError("the TIFF's first directory gives no ImageWidth or ImageLength")
    if 3 in tags.get(339, []):
        raise HeaderError("it is a TIFF of float pixels, which edgedml does not read; convert it to 8-bit JPEG/PNG")
    if max(tags.get(258, [8]), default=8) > 16:
        raise HeaderError(f"it is a TIFF of {max(tags[258])}-bit samples; edgedml reads 8- and 16-bit images: "
                          f"convert it to 8-bit JPEG/PNG")
    return tags[256][0], tags[257][0]


def webp_size(data) -> tuple[int, int]:
    chunk = bytes(data[12:16])
    if chunk == b"VP8 ":
        if bytes(data[23:26]) != b"\x9d\x01\x2a":
            raise HeaderError("the WebP VP8 frame has no start code")
        return _u(data, 26, 2, "little") & 0x3FFF, _u(data, 28, 2, "little") & 0x3FFF
    if chunk == b"VP8L":
        if _u(data, 20, 1) != 0x2F:
            raise HeaderError("the WebP VP8L frame has no signature")
        bits = _u(data, 21, 4, "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return _u(data, 24, 3, "little") + 1, _u(data, 27, 3, "little") + 1
    raise HeaderError(f"the WebP's first chunk {chunk!r} is not VP8, VP8L or VP8X")


_PNM_NUMBER = re.compile(rb"(?:\s+|#[^\r\n]*)*(\d+)")


def pnm_size(data) -> tuple[int, int]:
    """P1–P6: width and height after the magic, whitespace and comments between tokens."""
    sides, at = [], 2
    for _ in range(2):
        found = _PNM_NUMBER.match(data, at)
        if not found:
            raise HeaderError("the PNM header gives no width and height")
        sides.append(int(found.group(1)))
        at = found.end()
    return sides[0], sides[1]


def pam_size(data) -> tuple[int, int]:
    """P7: WIDTH and HEIGHT lines before ENDHDR."""
    end = re.search(rb"^ENDHDR", data, re.M)
    header = bytes(data[:end.start()]) if end else b""
    width, height = (re.search(rb"^" + key + rb"[ \t]+(\d+)", header, re.M) for key in (b"WIDTH", b"HEIGHT"))
    if not (end and width and height):
        raise HeaderError("the PAM header gives no WIDTH, HEIGHT and ENDHDR")
    return int(width.group(1)), int(height.group(1))


def gif_size(data) -> tuple[int, int]:
    """The logical screen, widened to the first frame where that frame reaches past it."""
    width, height, flags = _u(data, 6, 2, "little"), _u(data, 8, 2, "little"), _u(data, 10, 1)
    i = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while True:
        block = _u(data, i, 1)
        if block == 0x2C:  # image descriptor: left, top, width, height
            left, top = _u(data, i + 1, 2, "little"), _u(data, i + 3, 2, "little")
            return max(width, left + _u(data, i + 5, 2, "little")), max(height, top + _u(data, i + 7, 2, "little"))
        if block != 0x21:  # an extension: its label, then sub-blocks up to an empty one
            raise HeaderError("the GIF has no image before its end")
        i += 2
        while (size := _u(data, i, 1)) != 0:
            i += 1 + size
        i += 1


_FORMATS = [  # (signature(s), format, reader)
    ((b"\x89PNG\r\n\x1a\n",), "png", png_size),
    ((b"\xff\xd8",), "jpeg", jpeg_size),
    ((b"BM",), "bmp", bmp_size),
    ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "tiff", tiff_size),
    ((b"GIF87a", b"GIF89a"), "gif", gif_size),
    ((b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"), "pnm", pnm_size),
    ((b"P7",), "pam", pam_size),
]


def read_header(data) -> tuple[str, int, int]:
    """(format, width, height) of an encoded image (bytes, or a uint8 buffer); :class:`HeaderError`
    for a format whose size is not read here, or a header that cannot be read."""
    data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    for signatures, kind, reader in _FORMATS:
        if any(_starts(data, s) for s in signatures):
            width, height = reader(data)
            return kind, width, height
    if _starts(data, b"RIFF") and bytes(data[8:12]) == b"WEBP":
        return ("webp", *webp_size(data))
    for signature, name in FLOAT_FORMATS.items():
        if _starts(data, signature):
            raise HeaderError(f"it is a {name} image, whose float pixels edgedml does not read; "
                              f"convert it to 8-bit JPEG/PNG")
    raise HeaderError(f"its format is not one edgedml reads ({READ})")
