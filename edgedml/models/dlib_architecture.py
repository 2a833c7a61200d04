"""dlib's face-recognition ResNet (``anet_type`` of dlib's ``examples/dnn_face_recognition_ex.cpp``)
as data (stdlib only): its input constants and its layers in dlib's serialized order. The torch
module (:mod:`.dlib_resnet`) is built from it and the reader of dlib's file (:mod:`.dlib_format`)
checks the file against it.
"""

from __future__ import annotations

DLIB_MEAN_255 = (122.782, 117.001, 104.298)  # dlib's input_rgb_image_sized, 0…255 RGB
DLIB_MEAN = tuple(m / 255.0 for m in DLIB_MEAN_255)  # the same on [0, 1] pixels
DLIB_STD = (256.0 / 255.0,) * 3  # dlib divides by 256 (not 255)
CHIP_SIZE = 150
DESCRIPTOR_DIM = 128

# (filters, blocks, the first block downsamples), from input to output
LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


def dlib_layers() -> list[tuple]:
    """dlib's records of this network from input to output, one per serialized layer.

    Entries: ``("con", key, filters, size, stride, padding)``, ``("affine", key, channels)``,
    ``("relu",)``, ``("max_pool", size, stride, padding)``, ``("avg_pool", size, stride,
    padding)`` (size 0: the whole map), ``("add_prev",)``, ``("tag",)`` (a tag or skip layer: dlib
    writes no id for either), ``("fc", key, outputs, inputs)``. ``key`` names the parameters in
    the state dict of :class:`~edgedml.models.dlib_resnet.DlibFaceResNet`; the reader of dlib's
    file checks the file against this list.
    """
    seq: list[tuple] = [("con", "conv", 32, 7, 2, 0), ("affine", "affine", 32), ("relu",), ("max_pool", 3, 2, 0)]
    for li, (n, blocks, down) in enumerate(LEVELS):
        for bi in range(blocks):
            stride = 2 if down and bi == 0 else 1
            key = f"levels.{li}.{bi}"
            seq.append(("tag",))
            seq += [
                ("con", f"{key}.conv1", n, 3, stride, 0 if stride != 1 else 1),
                ("affine", f"{key}.affine1", n),
                ("relu",),
                ("con", f"{key}.conv2", n, 3, 1, 1),
                ("affine", f"{key}.affine2", n),
            ]
            if stride != 1:
                seq += [("tag",), ("tag",), ("avg_pool", 2, 2, 0)]
            seq += [("add_prev",), ("relu",)]
    seq += [("avg_pool", 0, 1, 0), ("fc", "fc", DESCRIPTOR_DIM, LEVELS[-1][0])]
    return seq
