"""The 50-megapixel decode guard: every format's size read from its header before OpenCV decodes
it (the same size OpenCV reads), formats whose header is not read refused, arrays refused by
shape before any copy. Crafted headers only: nothing here allocates a large image."""

import os
import subprocess
import sys
import tracemalloc

import cv2
import numpy as np
import pytest
from conftest import TESTS
from crafted_images import HUGE, bigtiff, bmp, bmp_os2, gif, jpeg, pam, png, pnm, tiff, webp_vp8, webp_vp8l, webp_vp8x

from edgedml.errors import InvalidImageError
from edgedml.runtime.inference.image import load_image
from edgedml.runtime.inference.image_header import HeaderError, read_header

SMALL = {  # format → a header claiming 40×30 pixels
    "png": lambda: png(40, 30), "jpeg": lambda: jpeg(40, 30), "jpeg after comments": lambda: jpeg(40, 30, 140_000),
    "bmp": lambda: bmp(40, 30), "bmp top-down": lambda: bmp(40, 30, True), "bmp os2": lambda: bmp_os2(40, 30),
    "tiff": lambda: tiff(40, 30), "tiff big-endian": lambda: tiff(40, 30, ">"),
    "tiff short": lambda: tiff(40, 30, long_sides=False), "bigtiff": lambda: bigtiff(40, 30),
    "bigtiff big-endian": lambda: bigtiff(40, 30, ">"), "webp vp8": lambda: webp_vp8(40, 30),
    "webp vp8l": lambda: webp_vp8l(40, 30), "webp vp8x": lambda: webp_vp8x(40, 30),
    **{f"pnm {m}": (lambda m=m: pnm(m.encode(), 40, 30)) for m in ("P1", "P2", "P3", "P4", "P5", "P6")},
    "pam": lambda: pam(40, 30), "gif": lambda: gif(40, 30),
}


@pytest.mark.parametrize("kind", sorted(HUGE))
def test_an_image_past_the_limit_is_refused_from_its_header(kind):
    data = HUGE[kind]()
    assert len(data) < 200_000
    with pytest.raises(InvalidImageError, match="edgedml decodes at most 50 MP"):
        load_image(data)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_every_header_gives_the_size(kind):
    assert read_header(SMALL[kind]())[1:] == (40, 30)


def test_opencv_reads_the_same_size_from_each_header():
    """With OpenCV's own limit one pixel under 40×30, OpenCV refuses each crafted header for its
    size: it read 40×30 from it, as read_header did (PNG and JPEG stop earlier without pixels)."""
    script = ("import sys, cv2, numpy as np\n"
              "sys.path[:0] = sys.argv[1:]\n"
              "from test_decode_guard import SMALL\n"
              "for kind, make in SMALL.items():\n"
              "    if kind.split()[0] in ('png', 'jpeg'):\n"
              "        continue\n"
              "    try:\n"
              "        cv2.imdecode(np.frombuffer(make(), np.uint8), cv2.IMREAD_COLOR)\n"
              "        print('decoded', kind)\n"
              "    except cv2.error as exc:\n"
              "        print('limit' if 'MAX_IMAGE_PIXELS' in str(exc) else 'other', kind)\n")
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": str(40 * 30 - 1), "OPENCV_LOG_LEVEL": "SILENT"}
    here = os.path.dirname(os.path.abspath(__file__))  # SMALL; crafted_images lives in TESTS
    out = subprocess.run([sys.executable, "-c", script, str(TESTS), here], env=env, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert [line for line in out if line and not line.startswith("limit")] == []


@pytest.mark.parametrize("suffix", [".jp2", ".ras", ".pfm", ".hdr"])
def test_a_format_whose_header_is_not_read_is_refused_before_decoding(suffix, monkeypatch):
    ok, data = cv2.imencode(suffix, np.full((64, 64, 3), 128, np.uint8))
    assert ok

    def never(*args):
        raise AssertionError("decoded")

    monkeypatch.setattr(cv2, "imdecode", never)
    with pytest.raises(InvalidImageError, match="not one edgedml reads|float pixels"):
        load_image(data.tobytes())


@pytest.mark.parametrize("data, why", [
    (b"\xff\xd8\xff\xfe\x00\x10" + b"x" * 14 + b"\xff\xda\x00\x02", "no frame header before its image data"),
    (b"\xff\xd8\xff\xfe\x00\x10" + b"x" * 14, "ends before its frame header"),
    (b"\xff\xd8\x00\x00", "no marker"),
    (b"II*\x00\x08\x00\x00\x00\x01\x00" + b"\x00" * 16, "gives no ImageWidth"),
    (b"MM\x00+\x00\x04\x00\x00", "unknown offset size"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8A", "not VP8"),
    (b"P6\n# no sides\n", "no width and height"),
    (b"GIF89a\x10\x00\x10\x00\x00\x00\x00\x3b", "no image before its end"),
    (b"\x00\x01\x02 not an image", "not one edgedml reads"),
])
def test_a_header_that_cannot_be_read_is_refused(data, why):
    with pytest.raises(HeaderError, match=why):
        read_header(data)
    with pytest.raises(InvalidImageError, match=why):
        load_image(data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_a_tiff_of_float_or_32_bit_samples_is_refused_before_decoding(dtype, monkeypatch):
    ok, data = cv2.imencode(".tiff", np.zeros((8, 8, 3), dtype))
    assert ok

    def never(*args):
        raise AssertionError("decoded")

    monkeypatch.setattr(cv2, "imdecode", never)
    with pytest.raises(InvalidImageError, match="convert it to 8-bit"):
        load_image(data.tobytes())


def test_a_jpeg_whose_frame_header_follows_128_kb_of_comments_is_still_decoded_at_reduced_size():
    photo = cv2.resize(np.random.default_rng(0).integers(0, 255, (60, 45, 3), dtype=np.uint8), (4500, 6000))
    ok, data = cv2.imencode(".jpg", photo)
    data = data.tobytes()
    comments = b"".join(b"\xff\xfe" + (65000).to_bytes(2, "big") + b"c" * 64998 for _ in range(3))
    image = load_image(data[:2] + comments + data[2:])
    assert image.shape == (1500, 1125, 3)  # 1/4, as without the comments


@pytest.mark.parametrize("shape, dtype", [((20000, 20000, 3), np.uint8), ((8000, 7000), np.uint16),
                                          ((8000, 7000, 4), np.float32)])
def test_an_array_past_the_limit_is_refused_before_any_copy(shape, dtype):
    huge = np.broadcast_to(np.zeros((1,) * len(shape), dtype), shape)  # no memory behind it
    tracemalloc.start()
    try:
        with pytest.raises(InvalidImageError, match="edgedml takes at most 50 MP"):
            load_image(huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_tiff_tag_given_twice_counts_at_its_larger_value():
    import struct

    entries = [(256, 4, 10), (256, 4, 100_000), (257, 4, 1000)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e[:2], 1, e[2]) for e in entries)
    data = b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4
    assert read_header(data) == ("tiff", 100_000, 1000)
    with pytest.raises(InvalidImageError, match="edgedml decodes at most 50 MP"):
        load_image(data)
