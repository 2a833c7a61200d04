"""Runtime latency and memory: compare(), and identify() over large galleries.

    python benchmarks/runtime.py

- compare(a, b) on the shipped sample photos with the default bundle (ONNX Runtime, CPU);
- identify() for galleries of 1k, 10k and 100k enrolled templates (synthetic unit embeddings and
  local features written through the real SQLite gallery), K = 100 re-ranked by the matcher:
  the time identify adds on top of embedding the query;
- peak resident memory of a fresh process that loads the default bundle and compares.
Results go to benchmarks/results/runtime.json. Uses the default 2 threads of this machine.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "images"


def median_ms(fn, repeats=10):
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(samples), 2)


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


def memory_of_a_runtime_process(bundle):
    # VmHWM (peak resident set of this process image); ru_maxrss would carry the parent's peak across exec
    code = (f"from edgedml.runtime import Matcher\n"
            f"m = Matcher({str(bundle)!r}); r = m.compare({str(SAMPLES / 'daisy_1.jpg')!r}, {str(SAMPLES / 'daisy_2.jpg')!r})\n"
            f"print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(int(out.stdout.strip()) / 1024, 1)


def main():
    from edgedml.cli import main as cli

    bundle = Path(tempfile.mkdtemp()) / "bundle"
    cli(["export", "--out", str(bundle)], standalone_mode=False)
    from edgedml.runtime import Matcher
    from edgedml.runtime.gallery import Gallery

    matcher = Matcher(bundle, backend="onnxruntime")
    a, b = SAMPLES / "daisy_1.jpg", SAMPLES / "daisy_2.jpg"
    query = matcher.embed(a)
    report = {"command": "python benchmarks/runtime.py", "backend": matcher.backend.describe(),
              "compare_ms": median_ms(lambda: matcher.compare(a, b)),
              "embed_one_image_ms": median_ms(lambda: matcher.embed(a)), "identify": {}}
    rng = np.random.default_rng(0)
    for n in (1_000, 10_000, 100_000):
        with Gallery(Path(tempfile.mkdtemp()) / "g.db", matcher, threshold=0.0) as gallery:
            fill(gallery, n, rng)
            t0 = time.perf_counter()
            gallery.identify(query)  # loads the templates into memory once
            load_s = time.perf_counter() - t0
            report["identify"][f"{n}"] = {"added_ms_per_query": median_ms(lambda: gallery.identify(query, rerank=100)),
                                          "first_call_load_s": round(load_s, 2)}
        print(n, report["identify"][f"{n}"], flush=True)
    report["runtime_process_peak_rss_mib"] = memory_of_a_runtime_process(bundle)
    out = ROOT / "benchmarks" / "results" / "runtime.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
