"""The OpenCV DNN backend: a bundle's graphs run by ``cv2.dnn`` (CPU, or CUDA where OpenCV was
built with it), for devices without ONNX Runtime."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...bundle import Manifest
from .graphs import GRAPHS, Backend, graph_files, graph_limits, graph_paths, load_error


class OpenCVBackend(Backend):
    name = "opencv"

    def __init__(self, bundle: Path, manifest: Manifest, precision: str = "fp32", cuda: bool | None = None):
        import cv2

        if cuda is None:
            try:
                cuda = cv2.cuda.getCudaEnabledDeviceCount() > 0
            except Exception:  # OpenCV built without its CUDA module
                cuda = False
        files, paths = graph_files(manifest, precision), graph_paths(bundle, manifest, precision)
        self.files, self.limits = files, graph_limits(manifest)
        self.nets, self.outputs, self.locks = {}, {}, {}
        targets = {"cuda": cv2.dnn.DNN_TARGET_CUDA, "cuda_fp16": cv2.dnn.DNN_TARGET_CUDA_FP16}
        for graph in GRAPHS:
            try:
                net = cv2.dnn.readNetFromONNX(str(paths[graph]))
            except cv2.error as exc:
                raise load_error(files[graph], "OpenCV's DNN module", exc) from exc
            if net.empty():  # OpenCV 5 returns an empty net for operators it lacks, and fails only at run time
                raise load_error(files[graph], "OpenCV's DNN module", RuntimeError(
                    "it holds operators this OpenCV does not implement"))
            if cuda:
                net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
                net.setPreferableTarget(targets[opencv_cuda_target(precision)])
            self.nets[graph] = net
            self.outputs[graph] = list(getattr(manifest, graph).outputs)
            self.locks[graph] = threading.Lock()  # a cv2.dnn.Net is not safe to share between threads
        self.target = "cuda" if cuda else "cpu"

    def run(self, graph, feeds):
        import cv2

        self._check_open()
        net = self.nets[graph]
        with self.locks[graph]:
            try:
                for name, value in feeds.items():
                    net.setInput(np.ascontiguousarray(value, dtype=np.float32), name)
                values = net.forward(self.outputs[graph])
            except cv2.error as exc:  # a graph OpenCV read but cannot run: one line, no decision
                raise load_error(self.files.get(graph, graph), "OpenCV's DNN module", exc, "run") from exc
        return dict(zip(self.outputs[graph], (np.asarray(v) for v in values)))

    def describe(self) -> str:
        return f"opencv dnn ({self.target})"

    def close(self) -> None:
        self.closed = True
        self.nets = {}


def opencv_cuda_target(precision: str) -> str:
    """OpenCV DNN's CUDA target for a graph set: "cuda_fp16" only for the fp16 set (whose
    matcher is always the fp16-safe log form), "cuda" for every other: an fp32 or INT8 set runs
    in fp32, as asked (the fp32 scaling-form matcher underflows in fp16)."""
    return "cuda_fp16" if precision == "fp16" else "cuda"
