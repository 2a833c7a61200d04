"""The matcher graph and `compare`, side by side with the graph edgedml shipped before.

    python benchmarks/matcher_latency.py

"Before" is the matcher as exported up to commit bb4d7e8: TorchScript exporter, opset 17,
100 Sinkhorn iterations (rebuilt here with that exporter, which torch still ships, deprecated).
"Now" is what `edgedml export` writes: the dynamo exporter at opset 18 with onnxscript's
optimizer, SINKHORN_ITERS (30) iterations. The dynamo graph at 100 iterations separates the two
changes. For the scaling form (the fp32 matcher) and the log form (the fp16 set's matcher):
graph nodes, file size, and ONNX Runtime CPU latency at K = 1, 10, 100 (interleaved medians,
1 thread and the default threads).

`compare` end to end (ORT, fp32, default threads) on the shipped photos with the default
bundle, then with its matcher replaced by the previous graph, and a profile of where the time
goes: decoding + preprocessing, the embedder (both images in one batch), the matcher, and the
explanation. Results: benchmarks/results/matcher_latency.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
PHOTOS = ROOT / "samples" / "images"


def previous_export(matcher, path: Path, regions: int, local_dim: int, embed_dim: int) -> None:
    """The matcher as the TorchScript exporter wrote it before (opset 17, K dynamic)."""
    import torch

    from edgedml.models.matcher import MATCHER_INPUTS, MATCHER_OUTPUTS

    example = tuple(torch.nn.functional.normalize(torch.randn(*shape), dim=-1) for shape in (
        (1, regions, local_dim), (1, embed_dim), (3, regions, local_dim), (3, embed_dim)))
    axes = {"candidate_local": {0: "K"}, "candidate_embedding": {0: "K"}, **{n: {0: "K"} for n in MATCHER_OUTPUTS}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # this exporter is deprecated: it is here only as the baseline
        torch.onnx.export(matcher.eval(), example, str(path), dynamo=False, opset_version=17,
                          input_names=list(MATCHER_INPUTS), output_names=list(MATCHER_OUTPUTS),
                          dynamic_axes=axes, do_constant_folding=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from export_latency import interleaved
    from runtime import median_ms

    from edgedml.bundle import read_manifest
    from edgedml.export import graphs
    from edgedml.export.exporter import ExportOptions, export_bundle
    from edgedml.export.validate import matcher_inputs
    from edgedml.models import ModelConfig, build_model
    from edgedml.models.config import SINKHORN_ITERS
    from edgedml.models.matcher import MATCHER_INPUTS, StructuralMatcher
    from edgedml.runtime import Matcher
    from edgedml.runtime.inference.image import load_image

    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()
    cfg = model.config
    work = Path(tempfile.mkdtemp())
    dims = (cfg.regions, cfg.local_dim, cfg.embed_dim)
    graphs_made = {}
    for form in ("scaling", "log"):
        graphs_made[f"before_{form}"] = work / f"before_{form}.onnx"
        previous_export(StructuralMatcher(cfg.sinkhorn_eps, 100, cfg.marginals, form), graphs_made[f"before_{form}"],
                        *dims)
        for iters in (100, SINKHORN_ITERS):
            name = f"dynamo_{iters}_{form}"
            graphs_made[name] = work / f"{name}.onnx"
            graphs.export_matcher(StructuralMatcher(cfg.sinkhorn_eps, iters, cfg.marginals, form), graphs_made[name],
                                  *dims)
    report = {"command": "python " + " ".join(sys.argv), "machine": platform.processor() or platform.machine(),
              "onnxruntime": ort.__version__, "torch": torch.__version__, "sinkhorn_iters_now": SINKHORN_ITERS,
              "graphs": {}, "matcher_ms": {}, "compare_ms": {}}
    for name, path in graphs_made.items():
        nodes = onnx.load(str(path)).graph.node
        # the TorchScript graph holds its constants as Constant nodes (the old export folded them
        # into initializers afterwards); both counts are given
        report["graphs"][name] = {"nodes": len(nodes),
                                  "nodes_without_constants": sum(n.op_type != "Constant" for n in nodes),
                                  "bytes": path.stat().st_size}
    print(json.dumps(report["graphs"], indent=2), flush=True)

    for threads in (1, 0):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        sessions = {n: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                    for n, p in graphs_made.items()}
        for k in (1, 10, 100):
            feeds = {n: t.numpy() for n, t in zip(MATCHER_INPUTS, matcher_inputs(*dims, k=k))}
            fns = {n: (lambda s=s, feeds=feeds: s.run(None, feeds)) for n, s in sessions.items()}
            row = interleaved(fns, args.repeats)
            report["matcher_ms"][f"{'1 thread' if threads == 1 else 'default threads'}, K={k}"] = row
            print(threads, k, row, flush=True)

    bundle = work / "bundle"
    export_bundle(model, bundle, ExportOptions(), log=lambda m: None)
    before = work / "bundle_before"
    shutil.copytree(bundle, before)
    shutil.copy(graphs_made["before_scaling"], before / "matcher.onnx")
    read_manifest(before, verify=False).write(before)  # fresh checksums for the swapped matcher
    a, b = PHOTOS / "daisy_1.jpg", PHOTOS / "daisy_2.jpg"
    matchers = {"now": Matcher(bundle, backend="onnxruntime"), "before": Matcher(before, backend="onnxruntime")}
    # in blocks (now ×N, before ×N, three rounds), not call by call: alternating two bundles' sessions
    # call by call evicts each one's weights from the caches and adds ~4 ms to every compare
    samples = {n: [] for n in matchers}
    for _ in range(3):
        for n, m in matchers.items():
            m.compare(a, b)
            samples[n] += [median_ms(lambda m=m: m.compare(a, b), 1) for _ in range(args.repeats)]
    row = {n: round(statistics.median(v), 3) for n, v in samples.items()}
    report["compare_ms"]["end_to_end"] = row
    now = matchers["now"]
    batch, _ = now.preprocess([a, b])
    features = now._embed_batch(batch)
    report["compare_ms"]["profile_now"] = {
        "decode_and_preprocess_2_images": median_ms(lambda: now.preprocess([a, b]), args.repeats),
        "decode_only_2_images": median_ms(lambda: (load_image(a), load_image(b)), args.repeats),
        "embedder_batch_2": median_ms(lambda: now._embed_batch(batch), args.repeats),
        "matcher_K_1": median_ms(lambda: now.match(features[0], features[1]), args.repeats),
    }
    profile = report["compare_ms"]["profile_now"]
    profile["explanation_and_rest"] = round(row["now"] - profile["decode_and_preprocess_2_images"]
                                            - profile["embedder_batch_2"] - profile["matcher_K_1"], 3)
    print(json.dumps(report["compare_ms"], indent=2), flush=True)
    np.testing.assert_allclose(matchers["now"].compare(a, b).score, matchers["before"].compare(a, b).score, atol=2e-3)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "matcher_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    names = list(graphs_made)
    lines = ["| matcher graph | nodes (without Constant) | " + " | ".join(report["matcher_ms"]) + " |",
             "|---|---|" + "---|" * len(report["matcher_ms"])]
    for n in names:
        g = report["graphs"][n]
        lines.append(f"| {n} | {g['nodes']} ({g['nodes_without_constants']}) | " + " | ".join(
            f"{row[n]:.2f} ms" for row in report["matcher_ms"].values()) + " |")
    lines += ["", "| compare (2 photos, fp32, ORT CPU) | ms |", "|---|---|",
              *(f"| end to end, {n} | {v:.1f} |" for n, v in report["compare_ms"]["end_to_end"].items()),
              *(f"| {n.replace('_', ' ')} | {v:.2f} |" for n, v in profile.items())]
    (out / "matcher_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
