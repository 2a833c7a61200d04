"""1:N at 100k and 1M templates: FAISS exact (IndexFlatIP) against FAISS IVF, numpy as the
fallback, end-to-end ``Gallery.identify`` on SQLite files of that size, and pgvector's HNSW
index at 100k.

    python benchmarks/gallery_scale.py                     # 100k and 1M, pgvector at 100k
    python benchmarks/gallery_scale.py --sizes 100000 --no-pgvector

No data set holds a million people, so the galleries are synthetic, shaped by real embeddings:
the `faces` preset (exported with the YuNet detector) embeds every ORL and Yale photo; identity
centres are drawn from a Gaussian fitted to the real people's mean embeddings (covariance shrunk
halfway to its trace, as 55 people cannot fill 128 dimensions); each template is a centre plus a
real photo's deviation from its own person's mean; each local feature map is a real photo's.
Genuine queries are an enrolled identity's centre plus another real deviation; impostor queries
come from centres that are not enrolled. Five templates per identity.

Measured per query with k = the bundle's rerank_k (100, the candidates the matcher re-ranks):
search time, recall@1 against exact search (the same top template), recall@k (the share of the
exact top k found), and for the gallery: the time ``identify`` adds over a 1,000-template gallery
(query features given, so embedding is excluded; the re-ranking of k candidates is in both).
Results: benchmarks/results/gallery_scale.{json,md}.
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
DATA = ROOT.parent / "shared" / "data"
YUNET = ROOT.parent / "shared" / "models" / "face_detection_yunet_2026may.onnx"
PER_IDENTITY = 5
QUERIES = 1000  # search-only; the end-to-end galleries take the first 100
NPROBES = (64, 128, 256, 512)  # and the default, a quarter of the lists
EF_SEARCH = (200, 400, 800)  # pgvector's hnsw.ef_search (the fleet gallery's default is among them)


def real_embeddings(bundle: Path):
    """(embedding (N, E), local (N, R, D), person (N,)) of every ORL and Yale photo with a face."""
    from edgedml.runtime import Matcher
    from edgedml.runtime.faces.detection import NoFaceFound
    from edgedml.runtime.inference.image import image_extensions

    matcher = Matcher(bundle, backend="onnxruntime")
    emb, local, person = [], [], []
    suffixes = image_extensions()
    folders = [p for name in ("orl_faces", "yalefaces") for p in sorted((DATA / name).iterdir()) if p.is_dir()]
    for number, folder in enumerate(folders):
        for photo in sorted(f for f in folder.iterdir() if f.suffix.lower() in suffixes):
            try:
                features = matcher.embed(photo)
            except NoFaceFound:
                continue
            emb.append(features.embedding[0])
            local.append(features.local[0])
            person.append(number)
    return matcher, np.array(emb), np.array(local), np.array(person)


class Population:
    """Synthetic identities shaped by the real embeddings (see the module doc)."""

    def __init__(self, emb: np.ndarray, local: np.ndarray, person: np.ndarray, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        means = np.stack([emb[person == p].mean(0) for p in np.unique(person)])
        self.deviations = emb - means[np.searchsorted(np.unique(person), person)]
        self.mu = means.mean(0)
        cov = np.cov(means, rowvar=False)
        cov = 0.5 * cov + 0.5 * np.trace(cov) / len(cov) * np.eye(len(cov))
        self.chol = np.linalg.cholesky(cov)
        self.local = local

    def centres(self, n: int) -> np.ndarray:
        return (self.mu + self.rng.normal(size=(n, len(self.mu))) @ self.chol.T).astype(np.float32)

    def samples(self, centres: np.ndarray) -> np.ndarray:
        x = centres + self.deviations[self.rng.integers(0, len(self.deviations), len(centres))]
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def locals(self, n: int) -> np.ndarray:
        return self.local[self.rng.integers(0, len(self.local), n)]


def median_ms(fn, queries) -> tuple[float, list]:
    out, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        out.append(fn(q))
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 3), out


def recalls(found: list, exact: list, k: int) -> dict:
    """recall@1: the same top template as exact search; identity_recall@1: a top template of the
    same identity (what identify ranks: an identity's templates are near-ties); recall@k: the
    share of the exact top k found."""
    at1 = np.mean([len(f) > 0 and f[0] == e[0] for f, e in zip(found, exact)])
    who = np.mean([len(f) > 0 and (f[0] - 1) // PER_IDENTITY == (e[0] - 1) // PER_IDENTITY
                   for f, e in zip(found, exact)])
    atk = np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, exact)])
    return {"recall@1": round(float(at1), 4), "identity_recall@1": round(float(who), 4),
            f"recall@{k}": round(float(atk), 4)}


def index_rows(n: int, population: Population, k: int) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Search-only: numpy, FAISS flat, FAISS IVF at several nprobe, on n templates."""
    from edgedml.runtime.gallery.template_index import IndexSettings, TemplateIndex

    identities = n // PER_IDENTITY
    centres = population.centres(identities)
    emb = population.samples(np.repeat(centres, PER_IDENTITY, axis=0))
    ids = np.arange(1, n + 1, dtype=np.int64)
    drawn = population.rng.integers(0, identities, QUERIES)  # the identity each genuine query comes from
    genuine = population.samples(centres[drawn])
    impostor = population.samples(population.centres(QUERIES))
    rows = {"templates": n, "identities": identities, "chosen_by_size": IndexSettings().kind_for(n)}
    t0 = time.perf_counter()
    flat = TemplateIndex.build(ids, emb, kind="flat")
    rows["flat"] = {"build_s": round(time.perf_counter() - t0, 2)}
    rows["flat"]["ms_per_query"], exact = median_ms(lambda q: flat.search(q, k), genuine)
    _, exact_impostor = median_ms(lambda q: flat.search(q, k), impostor)
    own = np.mean([(e[0] - 1) // PER_IDENTITY == i for e, i in zip(exact, drawn)])
    rows["genuine_top1_own_identity"] = round(float(own), 4)
    brute = TemplateIndex.build(ids, emb, kind="numpy")
    rows["numpy"] = {"ms_per_query": median_ms(lambda q: brute.search(q, k), genuine[:50])[0]}
    t0 = time.perf_counter()
    ivf = TemplateIndex.build(ids, emb, kind="ivf")
    rows["ivf_build_s"] = round(time.perf_counter() - t0, 2)
    rows["ivf_nlist"] = int(ivf._faiss.nlist)
    rows["ivf_default_nprobe"] = int(ivf._faiss.nprobe)
    for nprobe in sorted({*NPROBES, rows["ivf_default_nprobe"]}):
        ivf._faiss.nprobe = nprobe
        ms, found = median_ms(lambda q: ivf.search(q, k), genuine)
        _, found_impostor = median_ms(lambda q: ivf.search(q, k), impostor)
        own_found = np.mean([np.any((f - 1) // PER_IDENTITY == i) for f, i in zip(found, drawn)])
        rows[f"ivf_nprobe{nprobe}"] = {"ms_per_query": ms, "genuine": recalls(found, exact, k),
                                       "impostor": recalls(found_impostor, exact_impostor, k),
                                       "own_identity_in_top_k": round(float(own_found), 4)}
        print(n, f"nprobe {nprobe}", rows[f"ivf_nprobe{nprobe}"], flush=True)
    print(n, {key: v for key, v in rows.items() if not key.startswith("ivf_nprobe")}, flush=True)
    return rows, emb, genuine, centres


def fill_sqlite(path: Path, layout, emb: np.ndarray, population: Population) -> None:
    """Write the templates into a new SQLite gallery in large transactions (what enrolling them
    one identity at a time would leave, faster)."""
    import sqlite3

    from edgedml.runtime.gallery.sqlite_store import SQLiteStore

    SQLiteStore(path, layout).close()  # the schema
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    for start in range(0, len(emb), 20_000):
        stop = min(len(emb), start + 20_000)
        db.execute("BEGIN")
        db.executemany("INSERT INTO identities (id, name, created) VALUES (?, ?, 0)",
                       [(i + 1, f"id{i:07d}") for i in range(start // PER_IDENTITY, stop // PER_IDENTITY)])
        local = population.locals(stop - start)
        db.executemany("INSERT INTO templates (identity_id, embedding, local, source, created) VALUES (?,?,?,NULL,0)",
                       [(i // PER_IDENTITY + 1, emb[i].tobytes(), local[i - start].tobytes())
                        for i in range(start, stop)])
        db.execute("COMMIT")
    db.close()


def gallery_rows(matcher, emb: np.ndarray, genuine: np.ndarray, population: Population, folder: Path) -> dict:
    """End-to-end identify on an SQLite gallery of len(emb) templates, against 1,000 templates."""
    from edgedml.runtime.gallery.gallery import Gallery, matcher_layout
    from edgedml.runtime.gallery.template_index import IndexSettings
    from edgedml.runtime.matching.features import Features

    layout = matcher_layout(matcher)
    local = population.locals(100)
    queries = [Features(genuine[i:i + 1], local[i:i + 1]) for i in range(100)]
    out = {}
    for label, rows in (("1000", emb[:1000]), (str(len(emb)), emb)):
        path = folder / f"g{label}.db"
        fill_sqlite(path, layout, rows, population)
        t0 = time.perf_counter()
        with Gallery(path, matcher, threshold=0.0) as g:
            g.identify(queries[0])
            first = time.perf_counter() - t0
            ms, _ = median_ms(lambda q: g.identify(q), queries)
            kind = g.store.index_kind()
        t0 = time.perf_counter()
        with Gallery(path, matcher, threshold=0.0) as g:  # a restart: the saved index, not a rebuild
            g.identify(queries[0])
            restart = time.perf_counter() - t0
        out[label] = {"index": kind, "identify_ms": ms, "first_identify_s": round(first, 2),
                      "restart_first_identify_s": round(restart, 2),
                      "file_gb": round(path.stat().st_size / 1e9, 2)}
        if label != "1000":  # the same file without FAISS: numpy's matrix product inside identify
            with Gallery(path, matcher, threshold=0.0, index=IndexSettings(exact_from=len(rows) + 1)) as g:
                g.identify(queries[0])
                out[label]["identify_ms_numpy"] = median_ms(lambda q: g.identify(q), queries)[0]
        for leftover in folder.glob(f"g{label}.db*"):
            leftover.unlink()
        print(label, out[label], flush=True)
    small, large = out["1000"]["identify_ms"], out[str(len(emb))]["identify_ms"]
    out["extra_ms_per_query"] = round(large - small, 2)
    out["extra_ms_per_query_numpy"] = round(out[str(len(emb))]["identify_ms_numpy"] - small, 2)
    return out


def pgvector_rows(matcher, emb: np.ndarray, genuine: np.ndarray, population: Population, folder: Path, k: int) -> dict:
    """pgvector at len(emb) templates: enroll throughput, HNSW search time and recall, identify."""
    import pgserver

    from edgedml.runtime.gallery.gallery import Gallery
    from edgedml.runtime.gallery.template_index import TemplateIndex
    from edgedml.runtime.matching.features import Features

    server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        url = server.get_uri()
        local = population.locals(len(genuine))
        with Gallery(url, matcher, threshold=0.0, door="bench") as g:
            t0 = time.perf_counter()
            for i in range(0, len(emb), PER_IDENTITY):
                rows = slice(i, i + PER_IDENTITY)
                g.store.enroll(f"id{i // PER_IDENTITY:07d}", emb[rows], population.locals(PER_IDENTITY), None,
                               [None] * PER_IDENTITY)
            enroll_s = time.perf_counter() - t0
            print("pgvector enrolled", len(emb), round(enroll_s, 1), "s", flush=True)
            exact_index = TemplateIndex.build(np.arange(1, len(emb) + 1), emb, kind="flat")
            exact = [exact_index.search(q, k) for q in genuine]
            sweep, default_ef = {}, g.store.ef_search
            for ef in EF_SEARCH:  # the HNSW candidate list: more is slower and finds more
                g.store.ef_search = ef
                ms, found = median_ms(lambda q: g.store.nearest(q, k), genuine)
                # a new database numbers templates 1..N in enrollment order, as the exact index does
                assert all(n == f"id{(t - 1) // PER_IDENTITY:07d}" for f in found for t, n in zip(f.ids, f.names))
                sweep[ef] = {"nearest_ms_per_query": ms, "genuine": recalls([f.ids for f in found], exact, k)}
                print("pgvector ef_search", ef, sweep[ef], flush=True)
            g.store.ef_search = default_ef
            queries = [Features(genuine[i:i + 1], local[i:i + 1]) for i in range(100)]
            identify_ms, _ = median_ms(lambda q: g.identify(q), queries)
        return {"templates": len(emb), "enroll_templates_per_s": round(len(emb) / enroll_s, 1),
                "identify_ms": identify_ms, "ef_search": sweep, "default_ef_search": default_ef}
    finally:
        server.cleanup()


def markdown(report: dict) -> str:
    k = report["k"]
    lines = [f"Synthetic galleries shaped by the `faces` preset's embeddings of {report['real_photos']} real photos "
             f"({report['embedding_size']}-d, 5 templates per identity, {QUERIES} genuine queries, k = {k}); "
             f"{report['machine']}. `{report['command']}`.", "",
             "| templates | index | build (s) | ms / query | recall@1 vs exact (template) "
             "| recall@1 vs exact (identity) | recall@k vs exact |",
             "|---|---|---|---|---|---|---|"]
    for size in report["sizes"]:
        lines.append(f"| {size['templates']:,} | numpy (no FAISS) | – | {size['numpy']['ms_per_query']} | 1 | 1 | 1 |")
        chosen = " ← chosen" if size["chosen_by_size"] == "flat" else ""
        lines.append(f"| {size['templates']:,} | FAISS flat (exact){chosen}"
                     f" | {size['flat']['build_s']} | {size['flat']['ms_per_query']} | 1 | 1 | 1 |")
        for nprobe in sorted({*NPROBES, size["ivf_default_nprobe"]}):
            row = size[f"ivf_nprobe{nprobe}"]
            chosen = " ← chosen" if size["chosen_by_size"] == "ivf" and nprobe == size["ivf_default_nprobe"] else ""
            lines.append(f"| {size['templates']:,} | FAISS IVF{size['ivf_nlist']}, nprobe {nprobe}{chosen} | "
                         f"{size['ivf_build_s']} | {row['ms_per_query']} | {row['genuine']['recall@1']} "
                         f"(impostors {row['impostor']['recall@1']}) | {row['genuine']['identity_recall@1']} "
                         f"(impostors {row['impostor']['identity_recall@1']}) | {row['genuine'][f'recall@{k}']} |")
    if report.get("pgvector"):
        p = report["pgvector"]
        for ef, row in p["ef_search"].items():
            chosen = " ← default" if int(ef) == p["default_ef_search"] else ""
            lines.append(f"| {p['templates']:,} | pgvector HNSW, ef_search {ef}{chosen} | – | "
                         f"{row['nearest_ms_per_query']} | {row['genuine']['recall@1']} | "
                         f"{row['genuine']['identity_recall@1']} | {row['genuine'][f'recall@{k}']} |")
    lines += ["", "End-to-end `Gallery.identify` (query features given; re-ranking of k candidates included):", "",
              "| gallery | index | identify (ms) | extra over 1,000 templates (ms) | first identify (s) "
              "| after a restart (s) |",
              "|---|---|---|---|---|---|"]
    for size in report["sizes"]:
        g = size.get("gallery")
        if g:
            big = g[str(size["templates"])]
            lines.append(f"| SQLite, {size['templates']:,} ({big['file_gb']} GB) | {big['index']} | "
                         f"{big['identify_ms']} | "
                         f"{g['extra_ms_per_query']} | {big['first_identify_s']} | {big['restart_first_identify_s']} |")
            lines.append(f"| SQLite, {size['templates']:,}, without FAISS | numpy | {big['identify_ms_numpy']} | "
                         f"{g['extra_ms_per_query_numpy']} | – | – |")
    if report.get("pgvector"):
        lines.append(f"| PostgreSQL + pgvector, {report['pgvector']['templates']:,} | "
                     f"HNSW, ef_search {report['pgvector']['default_ef_search']} | "
                     f"{report['pgvector']['identify_ms']} | – | – | – |")
        lines += ["", f"pgvector enrollment: {report['pgvector']['enroll_templates_per_s']} templates per second "
                      f"(one identity of {PER_IDENTITY} templates per transaction, one process)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--no-gallery", action="store_true", help="index search only, no SQLite galleries")
    parser.add_argument("--no-pgvector", action="store_true")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    for needed in (DATA / "orl_faces", DATA / "yalefaces", YUNET):
        if not needed.exists():
            sys.exit(f"{needed} not found: this benchmark needs ../shared/data and ../shared/models")
    work = Path(tempfile.mkdtemp(prefix="gallery_scale_"))
    bundle = work / "faces"
    subprocess.run([sys.executable, "-m", "edgedml.cli", "export", "--checkpoint", "faces", "--out", str(bundle),
                    "--detector", f"yunet:{YUNET}"], check=True, stdout=subprocess.DEVNULL)
    matcher, emb, local, person = real_embeddings(bundle)
    population = Population(emb, local, person)
    k = matcher.manifest.rerank_k
    command = "python benchmarks/gallery_scale.py" + "".join(
        f" {flag}" for flag, on in ((f"--sizes {args.sizes}", args.sizes != "100000,1000000"),
                                    ("--no-gallery", args.no_gallery), ("--no-pgvector", args.no_pgvector)) if on)
    report = {"command": command,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
              "real_photos": len(emb), "embedding_size": emb.shape[1], "k": k,
              "sizes": []}
    for n in (int(s) for s in args.sizes.split(",")):
        rows, templates, genuine, _ = index_rows(n, population, k)
        if not args.no_gallery:
            rows["gallery"] = gallery_rows(matcher, templates, genuine, population, work)
        report["sizes"].append(rows)
        if n == 100_000 and not args.no_pgvector:
            report["pgvector"] = pgvector_rows(matcher, templates, genuine, population, work, k)
            print("pgvector", report["pgvector"], flush=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "gallery_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "gallery_scale.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
