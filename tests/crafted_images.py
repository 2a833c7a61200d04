"""Small files whose headers claim a huge image: a few hundred bytes each (the pixels are missing),
so the decode guard is tested without allocating anything. One builder per format the guard reads."""

import struct
import zlib

W, H = 8000, 7000  # 56 MP: past the 50 MP limit


def png(w=W, h=H):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def _segment(marker, body):
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def jpeg(w=W, h=H, comments=0):
    """SOI, ``comments`` bytes of COM segments (the frame header after them), then a baseline SOF0."""
    out = b"\xff\xd8" + _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    while comments > 0:
        body = b"x" * min(comments, 65000)
        out += _segment(0xFE, body)
        comments -= len(body)
    sof = struct.pack(">BHHB", 8, h, w, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return out + b"\xff\xff" + _segment(0xC0, sof) + b"\x00" * 64  # fill bytes before the frame header


def bmp(w=W, h=H, top_down=False):
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 64, 0, 0, 14 + len(info)) + info + b"\x00" * 64


def bmp_os2(w=30000, h=30000):
    """The OS/2 BITMAPCOREHEADER: 16-bit sides."""
    info = struct.pack("<IHHHH", 12, w, h, 1, 24)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 64, 0, 0, 14 + len(info)) + info + b"\x00" * 64


def tiff(w=W, h=H, order="<", long_sides=True):
    """A classic TIFF whose first IFD gives the sides as LONG (or SHORT), in ``order`` ("<" II, ">" MM)."""
    kind = 4 if long_sides else 3
    entries = [(256, kind, w), (257, kind, h), (258, 3, 8), (259, 3, 1), (262, 3, 2), (273, 4, 200),
               (277, 3, 3), (278, 4, h), (279, 4, min(w * h * 3, 2**32 - 1))]
    ifd = struct.pack(order + "H", len(entries))
    for tag, typ, value in entries:
        value_fmt = "I" if typ == 4 else "HH"
        packed = struct.pack(order + value_fmt, *((value,) if typ == 4 else (value, 0)))
        ifd += struct.pack(order + "HHI", tag, typ, 1) + packed
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    return magic + struct.pack(order + "I", 8) + ifd + struct.pack(order + "I", 0) + b"\x00" * 64


def bigtiff(w=W, h=H, order="<"):
    entries = [(256, 16, w), (257, 16, h), (258, 3, 8), (259, 3, 1), (262, 3, 2), (273, 16, 200), (277, 3, 3),
               (278, 16, h), (279, 16, w * h * 3)]
    ifd = struct.pack(order + "Q", len(entries))
    for tag, typ, value in entries:
        packed = struct.pack(order + "Q", value) if typ == 16 else struct.pack(order + "HHI", value, 0, 0)
        ifd += struct.pack(order + "HHQ", tag, typ, 1) + packed
    magic = b"II+\x00" if order == "<" else b"MM\x00+"
    return magic + struct.pack(order + "HHQ", 8, 0, 16) + ifd + struct.pack(order + "Q", 0) + b"\x00" * 64


def _riff(chunk, body):
    data = chunk + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(data)) + b"WEBP" + data


def webp_vp8(w=16383, h=16383):
    return _riff(b"VP8 ", b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", w, h) + b"\x00" * 64)


def webp_vp8l(w=16384, h=16384):
    return _riff(b"VP8L", b"\x2f" + struct.pack("<I", (w - 1) | ((h - 1) << 14)) + b"\x00" * 64)


def webp_vp8x(w=W, h=H):
    body = b"\x00\x00\x00\x00" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return _riff(b"VP8X", body) + b"VP8L" + struct.pack("<I", 5) + b"\x2f\x00\x00\x00\x00\x00"


def pnm(magic=b"P6", w=W, h=H, comments=True):
    note = b"# a comment\n#another 1 2 3\n" if comments else b""
    return magic + b"\n" + note + b"%d #width\n%d\n255\n" % (w, h) + b"\x00" * 64


def pam(w=W, h=H):
    return b"P7\n# comment\nWIDTH %d\nHEIGHT %d\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" % (w, h) + b"\x00" * 64


def gif(w=W, h=H, frame=None):
    """A GIF whose logical screen is w×h (or small, with a first frame of ``frame`` = (w, h))."""
    screen = (16, 16) if frame else (w, h)
    fw, fh = frame or (w, h)
    head = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    gce = b"\x21\xf9\x04\x00\x00\x00\x00\x00"
    return head + gce + b"\x2c" + struct.pack("<HHHHB", 0, 0, fw, fh, 0) + b"\x02\x02\x44\x01\x00\x3b"


def jpeg2000(w=W, h=H):
    siz = struct.pack(">HHIIIIIIIIH", 41, 0, w, h, 0, 0, w, h, 0, 0, 3) + b"\x07\x01\x01" * 3
    return b"\xff\x4f\xff\x51" + siz + b"\x00" * 64


def pfm(w=W, h=H):
    return b"PF\n%d %d\n-1.0\n" % (w, h) + b"\x00" * 64


HUGE = {  # format → a file claiming a 56 MP (or larger) image
    "png": png, "jpeg": lambda: jpeg(65000, 65000),  # past 50 MP even at 1/8 size (8125²)
    "jpeg after 128 KB of comments": lambda: jpeg(65000, 65000, comments=140_000),
    "bmp": bmp, "bmp top-down": lambda: bmp(top_down=True), "bmp os2": bmp_os2,
    "tiff little-endian": tiff, "tiff big-endian": lambda: tiff(order=">"),
    "tiff short sides": lambda: tiff(w=65535, h=65535, long_sides=False),
    "bigtiff": bigtiff, "bigtiff big-endian": lambda: bigtiff(order=">"),
    "webp vp8": webp_vp8, "webp vp8l": webp_vp8l, "webp vp8x": webp_vp8x,
    "pbm": lambda: pnm(b"P4"), "pgm": lambda: pnm(b"P5"), "ppm": pnm, "ppm ascii": lambda: pnm(b"P3"),
    "pam": pam, "gif": gif, "gif frame past its screen": lambda: gif(frame=(W, H)),
}
