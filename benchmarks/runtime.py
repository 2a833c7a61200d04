"""The runtime on a device install: cold start and memory, compare() per precision, identify().

    python benchmarks/runtime.py [BUNDLE] [--repeats 20] [--starts 5] [--no-galleries]

BUNDLE is a bundle folder or a shipped name (default ``objects``: the bundle that installs with
the package, ``edgedml/bundles/objects``). In one run:

- **cold start, device install**: ``--starts`` fresh Python processes in which torch, torchvision,
  timm, pytorch-metric-learning and onnx cannot be imported (as after ``pip install
  "edgedml[ort]"``; the process checks that none of them was loaded). Each measures the import
  of ``edgedml.runtime``, ``Matcher(BUNDLE)`` (fp32, ONNX Runtime on the CPU), the first
  ``compare`` of two sample photos, and its peak resident memory (``VmHWM``, Linux) after the
  import, after ``Matcher()`` and after that first compare. Medians over the processes.
- **compare latency per precision**: ``Matcher(BUNDLE, precision=p)`` for fp32 and int8-cpu (those
  the bundle has), in this process, in alternated rounds (one Matcher open at a time) so that
  both meet the same machine load: the median of ``compare(a, b)`` and of embedding one image,
  with the scores of the pair (the same pair must score alike).
- **identify** (unless ``--no-galleries``): galleries of 1k, 10k and 100k synthetic templates
  written through the real SQLite gallery; the time identify adds on top of embedding the query.

Results: benchmarks/results/runtime.json and runtime.md. ONNX Runtime's default threads (all
cores) unless ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "images"
PAIR = (SAMPLES / "daisy_1.jpg", SAMPLES / "daisy_2.jpg")
BLOCKED = ("torch", "torchvision", "timm", "pytorch_metric_learning", "onnx")

# Runs in a fresh interpreter: the device install (torch and onnx unimportable), one cold start.
COLD_START = """
import importlib.abc, json, sys, time
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(f'{{name}} is not installed on the device')
sys.meta_path.insert(0, Block())

def peak_mib():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM'):
            return int(line.split()[1]) / 1024
start_mib = peak_mib()
t0 = time.perf_counter()
from edgedml.runtime import Matcher
t1 = time.perf_counter()
import_mib = peak_mib()
matcher = Matcher({bundle!r}, backend='onnxruntime'{threads})
t2 = time.perf_counter()
loaded_mib = peak_mib()
result = matcher.compare({a!r}, {b!r})
t3 = time.perf_counter()
loaded = sorted({{k.split('.')[0] for k in sys.modules}} & set({blocked!r}))
assert not loaded, loaded
print(json.dumps({{"import_s": t1 - t0, "matcher_s": t2 - t1, "first_compare_s": t3 - t2,
                  "peak_rss_mib": {{"interpreter": start_mib, "after_import": import_mib,
                                   "after_matcher": loaded_mib, "after_first_compare": peak_mib()}},
                  "backend": matcher.backend.describe(), "score": float(result.score)}}))
"""


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(samples), 2)


def cold_starts(bundle: Path, starts: int, threads: int | None) -> dict:
    """``starts`` fresh device-install processes (see the module doc); medians and the raw runs."""
    code = COLD_START.format(blocked=BLOCKED, bundle=str(bundle), a=str(PAIR[0]), b=str(PAIR[1]),
                             threads=f", threads={threads}" if threads else "")
    runs = []
    for _ in range(starts):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
        if done.returncode:
            raise SystemExit(f"the device-install process failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))

    def med(get):
        return round(statistics.median(get(r) for r in runs), 3)

    return {"processes": starts, "blocked_imports": list(BLOCKED), "backend": runs[0]["backend"],
            "import_edgedml_runtime_s": med(lambda r: r["import_s"]),
            "matcher_load_s": med(lambda r: r["matcher_s"]),
            "first_compare_s": med(lambda r: r["first_compare_s"]),
            "peak_rss_mib": {k: round(statistics.median(r["peak_rss_mib"][k] for r in runs), 1)
                             for k in runs[0]["peak_rss_mib"]},
            "runs": runs}


def precisions(bundle: Path, repeats: int, threads: int | None) -> dict:
    """compare() and one embedding per precision (fp32, int8-cpu). Rounds alternate the
    precisions so that both meet the same machine load; within a round only one Matcher is open
    (a second ONNX Runtime session's spinning threads would slow the first on a small CPU)."""
    from edgedml.bundle import read_manifest
    from edgedml.runtime import Matcher

    have = [p for p in ("fp32", "int8-cpu") if p in read_manifest(bundle, verify=False).graphs]
    extra = {"threads": threads} if threads else {}
    out = {p: {"compare_ms": [], "embed_one_image_ms": []} for p in have}
    rounds = 3
    for _ in range(rounds):
        for p in have:
            with Matcher(bundle, backend="onnxruntime", precision=p, **extra) as m:
                out[p]["backend"] = m.backend.describe()
                out[p]["score"] = round(float(m.compare(*PAIR).score), 4)  # also the warm-up
                out[p]["compare_ms"].append(median_ms(lambda: m.compare(*PAIR), max(1, repeats // rounds)))
                out[p]["embed_one_image_ms"].append(median_ms(lambda: m.embed(PAIR[0]), max(1, repeats // rounds)))
    for entry in out.values():
        for key in ("compare_ms", "embed_one_image_ms"):
            entry[key] = round(statistics.median(entry[key]), 2)
    return out


def fill(gallery, n, rng):
    """n synthetic templates of unit vectors, inserted in one transaction."""
    io = gallery.matcher.manifest.matcher.inputs
    r, d, e = io["query_local"][1], io["query_local"][2], io["query_embedding"][1]
    db = gallery.store.db
    db.execute("BEGIN")
    for start in range(0, n, 1000):
        ids = []
        for i in range(start, min(n, start + 1000)):
            ids.append(db.execute("INSERT INTO identities (name, created) VALUES (?, 0)", (f"id{i:06d}",)).lastrowid)
        emb = rng.normal(size=(len(ids), e)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        local = rng.normal(size=(len(ids), r, d)).astype(np.float32)
        local /= np.linalg.norm(local, axis=2, keepdims=True)
        db.executemany("INSERT INTO templates (identity_id, embedding, local, source, created) VALUES (?,?,?,NULL,0)",
                       [(i, emb[k].tobytes(), local[k].tobytes()) for k, i in enumerate(ids)])
    db.execute("COMMIT")


def galleries(bundle: Path, threads: int | None) -> dict:
    from edgedml.runtime import Gallery, Matcher

    extra = {"threads": threads} if threads else {}
    out = {}
    with Matcher(bundle, backend="onnxruntime", **extra) as matcher:
        query = matcher.embed(PAIR[0])
        rng = np.random.default_rng(0)
        for n in (1_000, 10_000, 100_000):
            with Gallery(Path(tempfile.mkdtemp()) / "g.db", matcher, threshold=0.0) as gallery:
                fill(gallery, n, rng)
                t0 = time.perf_counter()
                gallery.identify(query)  # loads the templates into memory once
                load_s = time.perf_counter() - t0
                out[f"{n}"] = {"added_ms_per_query": median_ms(lambda: gallery.identify(query, rerank=100), 10),
                               "first_call_load_s": round(load_s, 2)}
            print(n, out[f"{n}"], flush=True)
    return out


def markdown(report: dict) -> str:
    cold, prec = report["cold_start_device_install"], report["precisions"]
    rss = cold["peak_rss_mib"]
    lines = [
        "# Runtime: device install, compare per precision" + (", identify" if "identify" in report else ""),
        "",
        f"`{report['command']}` on {report['machine']} (load average {report['load_average_at_start'][0]} at the "
        f"start); bundle `{report['bundle']}` ({report['bundle_source']}).",
        "",
        f"## Cold start on the device install ({cold['processes']} fresh processes, torch and onnx unimportable; "
        "medians)",
        "",
        "| step | time | peak RSS after it |",
        "|---|---|---|",
        f"| Python started | | {rss['interpreter']} MiB |",
        f"| `from edgedml.runtime import Matcher` | {cold['import_edgedml_runtime_s'] * 1000:.0f} ms | "
        f"{rss['after_import']} MiB |",
        f"| `Matcher(\"{report['bundle_arg']}\")` ({cold['backend']}) | {cold['matcher_load_s'] * 1000:.0f} ms | "
        f"{rss['after_matcher']} MiB |",
        f"| first `compare(a, b)` | {cold['first_compare_s'] * 1000:.0f} ms | {rss['after_first_compare']} MiB |",
        "",
        "## compare latency per precision (one process, alternated rounds, one Matcher open at a time; medians)",
        "",
        "| precision | backend | compare(a, b) | embed one image | score of the pair |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {p} | {e['backend']} | {e['compare_ms']} ms | {e['embed_one_image_ms']} ms | {e['score']} |"
              for p, e in prec.items()]
    if "identify" in report:
        lines += ["", "## identify: time added per query over the gallery (K = 100 re-ranked)", "",
                  "| templates | added per query | first call (load) |", "|---|---|---|"]
        lines += [f"| {n} | {e['added_ms_per_query']} ms | {e['first_call_load_s']} s |"
                  for n, e in report["identify"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", default="objects", help="a bundle folder or a shipped name")
    parser.add_argument("--repeats", type=int, default=30, help="compare() calls per precision")
    parser.add_argument("--starts", type=int, default=5, help="fresh device-install processes")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads [default: its own]")
    parser.add_argument("--no-galleries", action="store_true", help="skip the identify() galleries")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "runtime"),
                        help="results path without suffix (.json and .md are written)")
    args = parser.parse_args(argv)

    from edgedml.bundle import read_manifest
    from edgedml.runtime.shipped import resolve_bundle, shipped_bundles

    bundle = resolve_bundle(args.bundle).resolve()
    manifest = read_manifest(bundle)  # verified once: a tampered bundle is no benchmark
    shipped = shipped_bundles().get(args.bundle)
    source = ("the shipped bundle" if shipped and shipped.resolve() == bundle
              else f"exported: {manifest.source}; graphs {sorted(manifest.graphs)}")
    report = {"command": " ".join(["python benchmarks/runtime.py", *(argv if argv is not None else sys.argv[1:])]),
              "bundle_arg": args.bundle, "bundle": str(bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT)
                                                       else bundle),
              "bundle_source": source,
              "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
              "threads": args.threads or "onnxruntime's default",
              "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}  # other work on the machine
    report["cold_start_device_install"] = cold_starts(bundle, args.starts, args.threads)
    print(json.dumps({k: v for k, v in report["cold_start_device_install"].items() if k != "runs"}, indent=2))
    report["precisions"] = precisions(bundle, args.repeats, args.threads)
    print(json.dumps(report["precisions"], indent=2), flush=True)
    if not args.no_galleries:
        report["identify"] = galleries(bundle, args.threads)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
