"""The first stage of 1:N: which enrolled templates are nearest a query by global cosine.

:class:`TemplateIndex` keeps every template's embedding under its template id and answers
``search(query, k)`` with ids, best first. The kind follows the gallery's size
(:class:`IndexSettings`):

- fewer than ``exact_from`` templates (10,000), or FAISS not installed: a numpy matrix product;
- up to ``approximate_from`` (200,000): FAISS ``IndexFlatIP``, exact;
- from there on: FAISS ``IndexIVFFlat`` (inner product), approximate: the coarse quantizer's
  ``nlist`` centroids are learned once (k-means on a sample), every template lives in the list of
  its nearest centroid, and a query scans the ``nprobe`` nearest lists only (a quarter of them by
  default: on embeddings shaped like the faces preset's, that keeps recall@1 against exact search
  at 0.99 at 1M templates; ``benchmarks/gallery_scale.py``).

Templates are added and removed by id (enroll, revoke) without a rebuild; an IVF index is
retrained once the gallery has grown past ``retrain_growth`` times the size it was trained at.
``save``/``load`` keep it next to the gallery, so a restart does not retrain; the owner reconciles
a loaded index with the gallery's ids (``ids()``), adding and removing only what changed.

Embeddings are L2-normalised by the embedder, so inner product is cosine.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

KINDS = ("numpy", "flat", "ivf")


@dataclass(frozen=True)
class IndexSettings:
    """When to use which index, and the IVF's parameters (nlist None: 4·√N, at least 64;
    nprobe None: nlist / 4)."""

    exact_from: int = 10_000  # below this a numpy matrix product is as fast as FAISS
    approximate_from: int = 200_000  # an exact scan costs 19 ms per query at 1M templates (2 cores)
    nlist: int | None = None
    nprobe: int | None = None
    train_per_list: int = 40  # k-means sample: this many templates per list
    retrain_growth: float = 2.0

    def kind_for(self, count: int) -> str:
        if count < self.exact_from or not faiss_available():
            return "numpy"
        return "flat" if count < self.approximate_from else "ivf"

    def lists_for(self, count: int) -> int:
        return self.nlist or max(64, int(4 * np.sqrt(count)))

    def probes_for(self, nlist: int) -> int:
        return min(nlist, self.nprobe or max(1, nlist // 4))


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class TemplateIndex:
    """Template ids → embeddings (E,), searched by inner product."""

    def __init__(self, dim: int, kind: str = "numpy", settings: IndexSettings = IndexSettings()):
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose from {KINDS}")
        self.dim, self.kind, self.settings = dim, kind, settings
        self.trained_at = 0  # the size an IVF index was trained at
        self._ids = np.zeros(0, np.int64)  # numpy kind: the rows of _emb
        self._emb = np.zeros((0, dim), np.float32)
        self._faiss = None

    @classmethod
    def build(cls, ids: np.ndarray, embeddings: np.ndarray, settings: IndexSettings = IndexSettings(),
              kind: str | None = None) -> TemplateIndex:
        """An index of the kind ``settings`` chooses for ``len(ids)`` templates (or ``kind``)."""
        index = cls(embeddings.shape[1], kind or settings.kind_for(len(ids)), settings)
        if index.kind == "ivf":
            index._train(embeddings)
        elif index.kind == "flat":
            import faiss

            index._faiss = faiss.IndexIDMap2(faiss.IndexFlatIP(index.dim))
        index.add(ids, embeddings)
        return index

    def _train(self, embeddings: np.ndarray) -> None:
        import faiss

        count = len(embeddings)
        nlist = min(self.settings.lists_for(count), max(1, count // 8))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = min(count, nlist * self.settings.train_per_list)
        rows = np.random.default_rng(0).choice(count, sample, replace=False) if sample < count else slice(None)
        ivf.train(np.ascontiguousarray(embeddings[rows], np.float32))
        ivf.nprobe = self.settings.probes_for(nlist)
        ivf.make_direct_map()  # ids → entries: remove_ids without a scan
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        self._faiss, self.trained_at = ivf, count

    def __len__(self) -> int:
        return len(self._ids) if self._faiss is None else int(self._faiss.ntotal)

    def needs_rebuild(self) -> bool:
        """True when the gallery has outgrown this kind (or an IVF its training)."""
        want = self.settings.kind_for(len(self))
        if want != self.kind:
            return True
        return self.kind == "ivf" and len(self) > self.settings.retrain_growth * self.trained_at

    def add(self, ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Add templates (ids (N,) int64, embeddings (N, E) float32)."""
        ids = np.asarray(ids, np.int64)
        embeddings = np.ascontiguousarray(embeddings, np.float32).reshape(len(ids), self.dim)
        if self._faiss is None:
            self._ids = np.concatenate([self._ids, ids])
            self._emb = np.concatenate([self._emb, embeddings])
        else:
            self._faiss.add_with_ids(embeddings, ids)

    def remove(self, ids: np.ndarray) -> None:
        """Remove templates by id (ids not in the index are ignored)."""
        ids = np.asarray(ids, np.int64)
        if not len(ids):
            return
        if self._faiss is None:
            keep = ~np.isin(self._ids, ids)
            self._ids, self._emb = self._ids[keep], self._emb[keep]
        else:
            import faiss

            ids = np.ascontiguousarray(ids)
            selector = (faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)) if self.kind == "ivf"  # hashtable map
                        else faiss.IDSelectorBatch(ids))
            self._faiss.remove_ids(selector)

    def ids(self) -> np.ndarray:
        """Every template id in the index, sorted."""
        if self._faiss is None:
            return np.sort(self._ids)
        import faiss

        if self.kind == "flat":
            return np.sort(faiss.vector_to_array(self._faiss.id_map).astype(np.int64))
        invlists = self._faiss.invlists
        parts = [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                 for i in range(invlists.nlist) if invlists.list_size(i)]
        return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, np.int64)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        """The ids of the k templates with the largest inner product with ``query`` (E,), best
        first (fewer when the index holds fewer)."""
        k = min(k, len(self))
        if k <= 0:
            return np.zeros(0, np.int64)
        if self._faiss is None:
            return self._ids[top_by_cosine(np.asarray(query, np.float32), self._emb, k)]
        import faiss

        # one query gains nothing from OpenMP threads, and they lose badly to the inference
        # backend's spinning threads right after a run (11 ms against 1.8 ms at 100k on 2 cores)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            found = self._faiss.search(np.ascontiguousarray(query, np.float32).reshape(1, -1), k)[1][0]
        finally:
            faiss.omp_set_num_threads(threads)
        return found[found >= 0].astype(np.int64)

    def save(self, path: Path, stamp: dict) -> None:
        """Write the index to ``path`` and its description (with the owner's ``stamp``) to
        ``path.json``, each atomically (a crash leaves the old pair or none readable)."""
        path = Path(path)
        meta = {"kind": self.kind, "dim": self.dim, "trained_at": self.trained_at, "count": len(self),
                "settings": asdict(self.settings), "stamp": stamp}
        tmp = path.with_name(path.name + ".tmp")
        if self._faiss is None:
            with open(tmp, "wb") as handle:
                np.savez(handle, ids=self._ids, embeddings=self._emb)
        else:
            import faiss

            faiss.write_index(self._faiss, str(tmp))
        os.replace(tmp, path)
        meta_tmp = path.with_name(path.name + ".json.tmp")
        meta_tmp.write_text(json.dumps(meta))
        os.replace(meta_tmp, path.with_name(path.name + ".json"))

    @classmethod
    def load(cls, path: Path, stamp: dict, settings: IndexSettings = IndexSettings()) -> TemplateIndex | None:
        """The index saved at ``path`` if it exists, is readable and carries ``stamp``; else None."""
        path = Path(path)
        try:
            meta = json.loads(path.with_name(path.name + ".json").read_text())
            if meta.get("stamp") != stamp or meta.get("kind") not in KINDS:
                return None
            index = cls(int(meta["dim"]), meta["kind"], settings)
            index.trained_at = int(meta["trained_at"])
            if index.kind == "numpy":
                with np.load(path) as saved:
                    index._ids, index._emb = saved["ids"].astype(np.int64), saved["embeddings"].astype(np.float32)
            else:
                if not faiss_available():
                    return None
                import faiss

                index._faiss = faiss.read_index(str(path))
                if index.kind == "ivf":
                    index._faiss.nprobe = settings.probes_for(index._faiss.nlist)
            if len(index) != int(meta["count"]):
                return None  # index and description from different saves
            return index
        except (OSError, ValueError, KeyError, RuntimeError):  # absent, torn or foreign: rebuild
            return None


def top_by_cosine(query: np.ndarray, embeddings: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k rows of ``embeddings`` (N, E) most similar to ``query`` (E,), best
    first (exact)."""
    k = min(k, len(embeddings))
    scores = embeddings @ query
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return top[np.argsort(-scores[top], kind="stable")]
