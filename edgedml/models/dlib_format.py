"""A reader of dlib's serialized face-recognition network (pure Python + numpy, no dlib).

dlib's format (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``, ``input.h``,
``cuda/tensor.h``), as this file reads it:

- integer: one byte (bit 7: negative; low 4 bits: byte count n), then n bytes, little-endian
- string: an integer length, then the bytes; bool: the character ``'0'`` or ``'1'``
- float / double: two integers, mantissa and exponent: ``mantissa · 2**exponent``
- tensor: integer version 2, four integer sizes (samples, k, rows, cols), then raw
  little-endian float32 values; ``alias_tensor``: integer version 1 and four sizes
- the network: ``add_loss_layer`` writes version 1, its loss record, then its subnetwork.
  Every ``add_layer`` writes version 2 and its subnetwork *before* its own layer, so the file
  holds all versions from the output inwards (2: a layer; 1: a tag or skip layer, which write
  nothing else; 3: the layer on the input), then the input record, then each layer's record
  from the input outwards, each followed by three bools and three (empty) tensors, the first
  also by the sample expansion factor.

:func:`read_dlib_face_resnet` checks every record against
:func:`~edgedml.models.dlib_architecture.dlib_layers` and returns a state dict for
:class:`~edgedml.models.dlib_resnet.DlibFaceResNet`; any other file is refused in one line.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from .dlib_architecture import CHIP_SIZE, DLIB_MEAN_255, dlib_layers


class _Malformed(Exception):
    """The file is not the expected record at ``pos``."""


class DlibReader:
    """Reads dlib's primitive records from bytes; every read checks bounds and ranges."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise _Malformed(f"the file ends at byte {len(self.data)}, inside a record at byte {self.pos} "
                             "(truncated?)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        """dlib's compact integer: a control byte (sign bit 7, byte count in bits 0–3), then the bytes."""
        at = self.pos
        control = self._take(1)[0]
        n = control & 0x0F
        if control & 0x70 or n > 8:
            raise _Malformed(f"byte {at} is not an integer (control byte 0x{control:02x})")
        value = int.from_bytes(self._take(n), "little")
        return -value if control & 0x80 else value

    def string(self, limit: int = 64) -> str:
        at = self.pos
        n = self.int()
        if not 0 <= n <= limit:
            raise _Malformed(f"byte {at} is not a short string (length {n})")
        raw = bytes(self._take(n))
        if not all(32 <= c < 127 for c in raw):
            raise _Malformed(f"byte {at} is not a text string")
        return raw.decode("ascii")

    def boolean(self) -> bool:
        at = self.pos
        c = self._take(1)[0]
        if c not in (0x30, 0x31):
            raise _Malformed(f"byte {at} is not a bool ('0' or '1')")
        return c == 0x31

    def real(self) -> float:
        """dlib's float_details: mantissa and exponent integers (exponent ≥ 32000: inf / -inf / nan)."""
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:
            return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)
        return math.ldexp(mantissa, exponent)

    def _sizes(self, what: str) -> tuple[int, int, int, int]:
        at = self.pos
        sizes = tuple(self.int() for _ in range(4))
        if min(sizes) < 0 or math.prod(sizes) > 1 << 28:
            raise _Malformed(f"byte {at}: {what} sizes {sizes} are not a tensor's")
        return sizes

    def tensor(self) -> np.ndarray:
        """A tensor (version 2): float32 array of shape (samples, k, rows, cols)."""
        at = self.pos
        if self.int() != 2:
            raise _Malformed(f"byte {at} is not a tensor record (version 2)")
        shape = self._sizes("tensor")
        raw = self._take(4 * math.prod(shape))
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        at = self.pos
        if self.int() != 1:
            raise _Malformed(f"byte {at} is not an alias_tensor record (version 1)")
        return self._sizes("alias_tensor")


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise _Malformed(message)


def _layer(r: DlibReader) -> tuple:
    """One layer's record → ``(kind, settings..., arrays)`` in the form of ``dlib_layers()`` entries."""
    at = r.pos
    name = r.string()
    if name == "con_4":
        params = r.tensor()
        n, nr, nc, sy, sx, py, px = (r.int() for _ in range(7))
        fshape, bshape = r.alias(), r.alias()
        [r.real() for _ in range(4)]  # learning-rate and weight-decay multipliers
        _expect(nr == nc and sy == sx and py == px, f"byte {at}: a con_ layer that is not square")
        _expect(fshape[0] == n and fshape[2:] == (nr, nc) and bshape == (1, n, 1, 1)
                and params.size == math.prod(fshape) + n, f"byte {at}: con_ parameter sizes disagree")
        flat = params.reshape(-1)
        weight = flat[: math.prod(fshape)].reshape(fshape)
        return ("con", n, nr, sy, py, {"weight": weight, "bias": flat[weight.size:]})
    if name == "affine_":
        params = r.tensor()
        gshape, bshape, mode = r.alias(), r.alias(), r.int()
        _expect(mode == 0 and gshape == bshape and gshape[0] == 1 and gshape[2:] == (1, 1)
                and params.size == 2 * gshape[1], f"byte {at}: an affine_ layer not in conv mode")
        flat = params.reshape(-1)
        return ("affine", gshape[1], {"weight": flat[: gshape[1]], "bias": flat[gshape[1]:]})
    if name in ("max_pool_2", "avg_pool_2"):
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        _expect(nr == nc and sy == sx and py == px, f"byte {at}: a pooling layer that is not square")
        return (name[:8], nr, sy, py)
    if name in ("relu_", "add_prev_"):
        return (name.rstrip("_"),)
    if name == "fc_2":
        outputs, inputs = r.int(), r.int()
        params = r.tensor()
        wshape, bshape, bias_mode = r.alias(), r.alias(), r.int()
        [r.real() for _ in range(4)]
        _expect(bias_mode == 1 and wshape == (inputs, outputs, 1, 1) and math.prod(bshape) == 0
                and params.size == inputs * outputs, f"byte {at}: an fc_ layer with a bias or of other sizes")
        # dlib computes x (B, inputs) · W (inputs, outputs); torch's Linear holds W transposed
        return ("fc", outputs, inputs, {"weight": np.ascontiguousarray(params.reshape(inputs, outputs).T)})
    raise _Malformed(f"byte {at}: layer '{name}' is not part of dlib's face ResNet")


def _trailer(r: DlibReader, first: bool) -> None:
    """What ``add_layer`` writes after its layer: three bools, x_grad, cached output, params_grad
    (and, for the layer on the input, the sample expansion factor)."""
    for _ in range(3):
        r.boolean()
    for _ in range(3):
        r.tensor()
    if first:
        r.int()


def parse_dlib_network(data: bytes) -> tuple[list[tuple], dict]:
    """dlib's serialized ``loss_metric`` network → (layers from input to output, each as
    ``_layer`` returns them, with ``("tag",)`` where a tag or skip layer sits; the input record
    ``{"mean": (r, g, b), "size": (rows, cols)}``). Raises ``_Malformed``."""
    r = DlibReader(data)
    _expect(r.int() == 1, "it does not start with a dlib loss layer (version 1)")
    loss = r.string()
    _expect(loss == "loss_metric_2", f"its loss layer is '{loss}', not loss_metric_2")
    r.real(), r.real()  # margin, distance threshold
    versions = []
    while True:
        at = r.pos
        v = r.int()
        if v == 3:
            break
        _expect(v in (1, 2) and len(versions) < 10_000, f"byte {at}: version {v} is not a layer's")
        versions.append(v)
    _expect(r.string() == "input_rgb_image_sized", "its input layer is not input_rgb_image_sized")
    mean = (r.real(), r.real(), r.real())
    size = (r.int(), r.int())
    layers = []
    first = _layer(r)
    _trailer(r, first=True)
    layers.append(first)
    for v in reversed(versions):  # from the input outwards
        if v == 1:
            layers.append(("tag",))
        else:
            layers.append(_layer(r))
            _trailer(r, first=False)
    _expect(r.pos == len(r.data), f"{len(r.data) - r.pos} bytes follow the network's last record")
    return layers, {"mean": mean, "size": size}


def _signature(entry: tuple) -> tuple:
    """A layer without its parameter key and arrays: what must agree between file and module."""
    kind = entry[0]
    if kind in ("con", "affine", "fc"):
        return (kind, *[x for x in entry[1:] if isinstance(x, int)])
    return entry


def read_dlib_face_resnet(path: str | Path) -> dict[str, np.ndarray]:
    """dlib's ``dlib_face_recognition_resnet_model_v1.dat`` → state dict (numpy float32 arrays)
    for :class:`~edgedml.models.dlib_resnet.DlibFaceResNet`.

    Raises :class:`CheckpointError` in one line for any file that is not this network
    (another dlib model, a truncated copy, other bytes, another layer sequence).
    """
    path = Path(path)
    fix = ("pass dlib_face_recognition_resnet_model_v1.dat from the face-recognition-models wheel "
           "(pip install face-recognition-models)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc}); {fix}") from None
    try:
        layers, inp = parse_dlib_network(data)
        expected = dlib_layers()
        _expect(len(layers) == len(expected),
                f"it holds {len(layers)} layers, dlib's face ResNet {len(expected)}")
        for i, (got, want) in enumerate(zip(layers, expected)):
            _expect(_signature(got) == _signature(want),
                    f"layer {i} is {_signature(got)}, dlib's face ResNet has {_signature(want)} there")
        _expect(inp["size"] == (CHIP_SIZE, CHIP_SIZE), f"its input is {inp['size']}, not 150×150")
        _expect(all(abs(a - b) < 1e-3 for a, b in zip(inp["mean"], DLIB_MEAN_255)),
                f"its input means {inp['mean']} are not dlib's {DLIB_MEAN_255}")
    except _Malformed as exc:
        raise CheckpointError(f"{path} is not dlib's face-recognition ResNet: {exc}; {fix}") from None
    state = {}
    for got, want in zip(layers, expected):
        if isinstance(got[-1], dict):
            for name, array in got[-1].items():
                state[f"{want[1]}.{name}"] = array
    return state


def load_dlib_face_resnet(path: str | Path | None = None):
    """A :class:`~edgedml.models.dlib_resnet.DlibFaceResNet` in eval mode with dlib's weights,
    from ``path`` or the installed ``face-recognition-models`` wheel."""
    import torch

    from .dlib_files import dlib_model_file
    from .dlib_resnet import DlibFaceResNet

    state = read_dlib_face_resnet(path if path is not None else dlib_model_file())
    model = DlibFaceResNet()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)
    return model.eval()
