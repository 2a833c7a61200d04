"""fp32, fp16, int8 and int8-cpu graphs of a trained checkpoint: CPU latency and retrieval.

    edgedml train --data ../shared/data/cub_birds --out runs/cub_diml --head diml --freeze-stages 4 \\
        --lr 1e-5 --head-lr 1e-4 --epochs 3 --batch-size 32 --m-per-class 4 --batches-per-epoch 40 --no-eval
    python benchmarks/precision.py --checkpoint runs/cub_diml/best.safetensors

For each dataset (flowers17: classes 01–08 calibrate, 09–17 test; cub_birds: 01–38 calibrate,
39–76 test) the checkpoint is exported with ``--precision fp32,fp16,int8,int8-cpu``, INT8
calibrated on 64 images of the training classes, and ``--validate-data`` set to the test
classes: the exporter itself runs every graph set with ONNX Runtime and reports the embedding
cosine to fp32 and MAP@R (global and multi-scale, K = 100) on the test classes, so the numbers
here are the ones the manifest holds. Then the embedders are timed with ONNX Runtime on the CPU
(1 and 2 threads, batch 1 and 8, interleaved medians), and the fp32 scaling-form matcher
against the fp16 log-form matcher at K = 100. Results: benchmarks/results/precision.json and
precision.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
DATASETS = {"flowers17": 8, "cub_birds": 38}  # the first N sorted classes train (and calibrate)
PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")


def split_folders(root: Path, train_classes: int, work: Path) -> tuple[Path, Path]:
    """Folders of links to the images of the training classes (calibration) and the test classes."""
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    calib, test = work / "train", work / "test"
    for folder, chosen in ((calib, classes[:train_classes]), (test, classes[train_classes:])):
        folder.mkdir(parents=True)
        for c in chosen:  # real class folders of linked files (rglob does not enter linked folders)
            (folder / c.name).mkdir()
            for f in c.iterdir():
                (folder / c.name / f.name).symlink_to(f.resolve())
    return calib, test


def latency(bundle: Path, repeats: int) -> dict:
    import numpy as np
    import onnxruntime as ort
    from export_latency import interleaved

    from edgedml.bundle import read_manifest

    manifest = read_manifest(bundle)
    size = manifest.preprocessing.size
    rng = np.random.default_rng(0)
    out = {}
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # interleaved sessions: idle pool threads that spin would steal the core from the next one
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = {p: ort.InferenceSession(str(bundle / manifest.graphs[p]["embedder"]), options,
                                            providers=["CPUExecutionProvider"]) for p in PRECISIONS}
        for batch in (1, 8):
            x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
            fns = {p: (lambda s=s, x=x: s.run(None, {"images": x})) for p, s in sessions.items()}
            medians = interleaved(fns, repeats)
            out[f"embedder_threads{threads}_batch{batch}_ms"] = medians
        matchers = {p: ort.InferenceSession(str(bundle / manifest.graphs[p]["matcher"]), options,
                                            providers=["CPUExecutionProvider"]) for p in ("fp32", "fp16")}
        r, d = manifest.matcher.inputs["query_local"][1:]
        e = manifest.matcher.inputs["query_embedding"][1]

        def unit(*shape):
            v = rng.standard_normal(shape).astype(np.float32)
            return v / np.linalg.norm(v, axis=-1, keepdims=True)

        feeds = {"query_local": unit(1, r, d), "query_embedding": unit(1, e), "candidate_local": unit(100, r, d),
                 "candidate_embedding": unit(100, e)}
        out[f"matcher_threads{threads}_k100_ms"] = interleaved(
            {p: (lambda s=s, feeds=feeds: s.run(None, feeds)) for p, s in matchers.items()}, repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "runs" / "cub_diml" / "best.safetensors"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    from edgedml.export.exporter import ExportOptions, export_bundle
    from edgedml.models import load_checkpoint

    if not Path(args.checkpoint).is_file():
        sys.exit(f"no checkpoint at {args.checkpoint}: train one with the command in this script's docstring")
    model = load_checkpoint(args.checkpoint)
    results = {"checkpoint": args.checkpoint, "model": model.config.to_dict(), "machine": platform.processor()
               or platform.machine(), "python": platform.python_version(), "datasets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = None
        for name, train_classes in DATASETS.items():
            calib, test = split_folders(Path(args.data) / name, train_classes, Path(tmp) / name)
            bundle = Path(tmp) / f"bundle_{name}"
            started = time.perf_counter()
            manifest = export_bundle(model, bundle, ExportOptions(
                precisions=PRECISIONS, calib=str(calib), validate_data=str(test)),
                log=lambda m: print(m, file=sys.stderr))
            report = manifest.validation["precisions"]
            first = next(iter(report.values()))["map_at_r"]
            results["datasets"][name] = {
                "export_seconds": round(time.perf_counter() - started, 1),
                "test_classes": len([p for p in test.iterdir()]),
                "map_at_r": {"fp32": first["fp32"], **{p: report[p]["map_at_r"][p] for p in report}},
                "embedding_cosine_to_fp32": {p: {"mean": round(report[p]["embedder"]["embedding_cosine_mean"], 5),
                                                 "min": round(report[p]["embedder"]["embedding_cosine_min"], 5)}
                                             for p in report},
                "matcher_max_abs_diff": {p: report[p]["matcher"]["max_abs_diff_multiscale"] for p in report},
            }
            print(json.dumps(results["datasets"][name], indent=1), file=sys.stderr)
        results["latency"] = latency(bundle, args.repeats)
        results["files_bytes"] = {f: (bundle / f).stat().st_size for f in sorted({
            f for files in manifest.graphs.values() for f in files.values()})}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "precision.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "precision.md").write_text(table(results))
    print(table(results))


def table(results: dict) -> str:
    lat = results["latency"]
    lines = ["| precision | batch 1 (1 thread) | batch 8 per image (1 thread) | batch 8 per image (2 threads) | "
             "× fp32 at batch 8 (1 / 2 threads) | "
             + " | ".join(f"{d} MAP@R global / multi-scale" for d in results["datasets"]) + " |",
             "|---" * (5 + len(results["datasets"])) + "|"]
    for p in PRECISIONS:
        b1 = lat["embedder_threads1_batch1_ms"][p]
        b8 = [lat[f"embedder_threads{t}_batch8_ms"][p] / 8 for t in (1, 2)]
        ratio = [lat[f"embedder_threads{t}_batch8_ms"][p] / lat[f"embedder_threads{t}_batch8_ms"]["fp32"]
                 for t in (1, 2)]
        maps = [f"{d['map_at_r'][p]['global']:.4f} / {d['map_at_r'][p]['multiscale']:.4f}"
                for d in results["datasets"].values()]
        lines.append(f"| {p} | {b1:.1f} ms | {b8[0]:.2f} ms | {b8[1]:.2f} ms | {ratio[0]:.2f} / {ratio[1]:.2f} | "
                     + " | ".join(maps) + " |")
    m = lat["matcher_threads1_k100_ms"]
    lines.append("")
    lines.append(f"Matcher at K = 100, 1 thread: fp32 scaling form {m['fp32']:.2f} ms, "
                 f"fp16 log form {m['fp16']:.2f} ms.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import logging

    logging.basicConfig(format="%(message)s")  # the library logs its progress lines; a script shows them
    logging.getLogger("edgedml").setLevel(logging.INFO)
    main()
