"""Export time, bundle size, and CPU latency of the exported graphs against PyTorch eager and POT.

    python benchmarks/export_latency.py

Exports the default model (EfficientNet-Lite0 + DIML, 224×224, scaling-form matcher with the
default SINKHORN_ITERS = 30 Sinkhorn iterations), then times, single-threaded and interleaved
(A, B, A, B, ...) so that both sides see the same machine load, the median of --repeats calls of:
- the embedder at batch 1 and 8: ONNX Runtime, OpenCV DNN and PyTorch eager;
- the matcher for K = 1, 10, 100 candidates: ONNX Runtime and PyTorch eager;
- POT's ot.sinkhorn called pair by pair for K = 100 (what a naive device loop would do).
Results go to benchmarks/results/export_latency.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def interleaved(fns: dict, repeats: int, warmup: int = 3) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name] += timed(fn, 1)
    return {name: round(statistics.median(v), 3) for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    import cv2
    import onnxruntime as ort
    import ot
    import torch

    from edgedml.export.exporter import ExportOptions, export_bundle
    from edgedml.export.validate import matcher_inputs
    from edgedml.models import ModelConfig, build_model
    from edgedml.models.matcher import MATCHER_INPUTS, StructuralMatcher
    from edgedml.models.matching import marginals, region_similarity

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()
    bundle = Path(tempfile.mkdtemp()) / "bundle"
    started = time.perf_counter()
    manifest = export_bundle(model, bundle, ExportOptions(), log=lambda m: None)
    export_seconds = time.perf_counter() - started
    sizes = {name: (bundle / name).stat().st_size for name in manifest.files}

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    embedder = ort.InferenceSession(str(bundle / "embedder.onnx"), options, providers=["CPUExecutionProvider"])
    matcher_sess = ort.InferenceSession(str(bundle / "matcher.onnx"), options, providers=["CPUExecutionProvider"])
    net = cv2.dnn.readNetFromONNX(str(bundle / "embedder.onnx"))
    results = {"embedder": {}, "matcher": {}}

    for batch in (1, 8):
        images = torch.randn(batch, 3, 224, 224)
        array = images.numpy()

        def opencv(array=array):
            net.setInput(array)
            return net.forward(["embedding", "local"])

        with torch.no_grad():
            row = interleaved({
                "onnxruntime_ms": lambda array=array: embedder.run(None, {"images": array}),
                "opencv_dnn_ms": opencv,
                "pytorch_eager_ms": lambda images=images: model(images),
            }, args.repeats if batch == 1 else max(5, args.repeats // 4))
        row["ort_over_pytorch"] = round(row["onnxruntime_ms"] / row["pytorch_eager_ms"], 3)
        results["embedder"][f"batch_{batch}"] = row
        print("embedder", batch, row, flush=True)

    cfg = model.config
    matcher = StructuralMatcher.for_model(cfg, "scaling")
    for k in (1, 10, 100):
        inputs = matcher_inputs(cfg.regions, cfg.local_dim, cfg.embed_dim, k=k)
        feeds = {n: t.numpy() for n, t in zip(MATCHER_INPUTS, inputs)}
        with torch.no_grad():
            row = interleaved({
                "onnxruntime_ms": lambda feeds=feeds: matcher_sess.run(None, feeds),
                "pytorch_eager_ms": lambda inputs=inputs: matcher(*inputs),
            }, args.repeats)
        results["matcher"][f"K_{k}"] = row
        print("matcher", k, row, flush=True)

    inputs = matcher_inputs(cfg.regions, cfg.local_dim, cfg.embed_dim, k=100)
    s = region_similarity(inputs[0].double(), inputs[2].double()).numpy()
    u, v = (m.numpy() for m in marginals(inputs[0].double(), inputs[2].double(), cfg.marginals))

    def pot_loop(**kwargs):
        for i in range(100):
            if u[i].sum() > 0 and v[i].sum() > 0:
                ot.sinkhorn(u[i] / u[i].sum(), v[i] / v[i].sum(), 1 - s[i], cfg.sinkhorn_eps, warn=False, **kwargs)

    ort_ms = results["matcher"]["K_100"]["onnxruntime_ms"]
    # the same algorithm for the same iterations, and POT's defaults (iterate to 1e-9, ≤ 1000)
    for name, kwargs in (("pot_same_iterations", dict(method="sinkhorn", numItermax=cfg.sinkhorn_iters,
                                                           stopThr=0.0)),
                         ("pot_defaults", {})):
        pot_ms = statistics.median(timed(lambda kwargs=kwargs: pot_loop(**kwargs), 5))
        results[f"{name}_pair_by_pair_K_100_ms"] = round(pot_ms, 2)
        results[f"unrolled_over_{name}_speedup"] = round(pot_ms / ort_ms, 1)
    report = {"command": "python " + " ".join(sys.argv), "machine": f"{platform.machine()}, 1 thread",
              "onnxruntime": ort.__version__, "opencv": cv2.__version__, "torch": torch.__version__,
              "export_seconds": round(export_seconds, 1), "bundle_bytes": sizes, **results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
