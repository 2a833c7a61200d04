"""The 1:N search index: numpy, FAISS exact and FAISS IVF, kept in step with the gallery file
through enrollments, revocations, other processes' commits and restarts."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgedml.runtime import Matcher
from edgedml.runtime.gallery.gallery import Gallery
from edgedml.runtime.gallery.template_index import IndexSettings, TemplateIndex, top_by_cosine
from edgedml.runtime.matching.features import Features

faiss = pytest.importorskip("faiss", reason="faiss-cpu is in the dev extra: pip install -e '.[dev]'")

SMALL = IndexSettings(exact_from=20, approximate_from=60, nlist=4, nprobe=4)  # every kind within 100 templates


def unit(rng, n, e):
    x = rng.normal(size=(n, e)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng, identities, per, e, spread=0.15):
    """``identities`` centres with ``per`` templates each: embeddings shaped like enrolled people."""
    centres = unit(rng, identities, e)
    x = np.repeat(centres, per, axis=0) + spread / np.sqrt(e) * rng.normal(size=(identities * per, e))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), centres


@pytest.mark.parametrize("kind", ["numpy", "flat"])
def test_exact_kinds_return_the_exact_ranking_and_follow_adds_and_removes(kind):
    rng = np.random.default_rng(0)
    emb, ids = unit(rng, 2000, 32), np.arange(1000, 3000)
    index = TemplateIndex.build(ids, emb, kind=kind)
    query = unit(rng, 1, 32)[0]
    assert list(index.search(query, 10)) == list(ids[top_by_cosine(query, emb, 10)])
    best = index.search(query, 1)
    index.remove(best)
    assert best[0] not in index.search(query, 10) and len(index) == 1999
    index.add(np.array([5000]), query[None])
    assert index.search(query, 1)[0] == 5000
    assert set(index.ids()) == (set(ids) - {best[0]}) | {5000}


def test_ivf_recall_against_exact_on_clustered_embeddings():
    rng = np.random.default_rng(1)
    emb, centres = clustered(rng, 4000, 5, 64)
    ids = np.arange(len(emb))
    exact = TemplateIndex.build(ids, emb, kind="flat")
    ivf = TemplateIndex.build(ids, emb, IndexSettings(nprobe=16), kind="ivf")
    assert ivf.kind == "ivf" and ivf._faiss.nlist == IndexSettings().lists_for(len(emb)) == 565
    queries = centres[rng.integers(0, len(centres), 300)] + 0.15 / 8 * rng.normal(size=(300, 64))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    hits = [ivf.search(q, 1)[0] == exact.search(q, 1)[0] for q in queries]
    assert np.mean(hits) >= 0.99
    gone = exact.search(queries[0], 3)
    ivf.remove(gone)  # revoke: removed by id, no retraining
    assert not set(gone) & set(ivf.search(queries[0], 10)) and len(ivf) == len(emb) - 3


def test_a_saved_index_loads_only_with_its_stamp_and_a_torn_one_is_refused(tmp_path):
    rng = np.random.default_rng(2)
    emb = unit(rng, 500, 16)
    index = TemplateIndex.build(np.arange(500), emb, IndexSettings(nlist=8), kind="ivf")
    path = tmp_path / "g.db.index"
    index.save(path, {"gallery_id": "a"})
    loaded = TemplateIndex.load(path, {"gallery_id": "a"}, IndexSettings(nlist=8))
    assert loaded.kind == "ivf" and list(loaded.search(emb[7], 5)) == list(index.search(emb[7], 5))
    assert TemplateIndex.load(path, {"gallery_id": "b"}) is None  # another gallery's index
    path.write_bytes(path.read_bytes()[:100])
    assert TemplateIndex.load(path, {"gallery_id": "a"}) is None  # torn: rebuilt by the gallery


def _fill(store, rng, names, e, local_shape):
    emb = unit(rng, len(names), e)
    for name, row in zip(names, emb):
        local = unit(rng, local_shape[0], local_shape[1])
        store.enroll(name, row[None], local[None], None, [None])
    return dict(zip(names, emb))


def test_the_gallery_index_follows_enroll_revoke_other_processes_and_restarts(small_bundle, tmp_path, monkeypatch):
    bundle = small_bundle[1]
    matcher = Matcher(bundle)
    db = tmp_path / "door.db"
    rng = np.random.default_rng(3)
    with Gallery(db, matcher, threshold=0.0, index=SMALL) as g:
        layout = g.store.layout
        e, shape = layout.embedding_size, layout.local_shape
        people = _fill(g.store, rng, [f"p{i:03d}" for i in range(40)], e, shape)
        assert g.store.index_kind() == "flat"
        near = g.store.nearest(people["p007"], 1)
        assert near.names == ["p007"]
        people.update(_fill(g.store, rng, [f"p{i:03d}" for i in range(40, 80)], e, shape))
        assert g.store.index_kind() == "ivf"  # outgrew the exact index: trained once
        assert g.store.nearest(people["p055"], 1).names == ["p055"]
        assert g.revoke("p055")
        assert "p055" not in g.store.nearest(people["p055"], 10).names
        # another process enrolls and revokes: reconciled before the next search, by template ids
        code = ("import numpy as np\nfrom edgedml.runtime import Gallery, Matcher\n"
                "from edgedml.runtime.gallery.template_index import IndexSettings\n"
                f"g = Gallery({str(db)!r}, Matcher({str(bundle)!r}), index=IndexSettings(20, 60, 4, 4))\n"
                f"v = np.full((1, {e}), {1 / np.sqrt(e)}, np.float32)\n"
                f"g.store.enroll('newcomer', v, np.ones((1, {shape[0]}, {shape[1]}), np.float32), None, [None])\n"
                "g.revoke('p001')\ng.close()\n")
        subprocess.run([sys.executable, "-c", code], check=True)
        assert g.store.nearest(np.full(e, 1 / np.sqrt(e), np.float32), 1).names == ["newcomer"]
        assert "p001" not in g.store.nearest(people["p001"], 10).names
        own = g.store.templates_of("p010")
        decision = g.identify(Features(own.embedding, own.local), top_k=3)  # through the IVF index, re-ranked
        assert decision.name == "p010" and len(decision.candidates) == 3
    assert (tmp_path / "door.db.index").is_file() and (tmp_path / "door.db.index.json").is_file()

    # a restart loads the saved index instead of retraining it
    built = []
    original = TemplateIndex.build.__func__

    def counted(cls, *a, **k):
        built.append(1)
        return original(cls, *a, **k)

    monkeypatch.setattr(TemplateIndex, "build", classmethod(counted))
    with Gallery(db, matcher, threshold=0.0, index=SMALL) as g:
        assert g.store.nearest(people["p020"], 1).names == ["p020"] and built == []
        _fill(g.store, rng, ["late"], e, shape)  # changes after the save ...
    with Gallery(db, matcher, threshold=0.0, index=SMALL) as g:
        assert g.store.nearest(people["p030"], 1).names == ["p030"] and built == []
        assert "late" in g.store.identities()
    # an index file copied from another gallery is not trusted
    other = tmp_path / "other.db"
    with Gallery(other, matcher, index=SMALL) as g:
        _fill(g.store, rng, [f"q{i}" for i in range(70)], e, shape)
    shutil.copy(tmp_path / "door.db.index", tmp_path / "other.db.index")
    shutil.copy(tmp_path / "door.db.index.json", tmp_path / "other.db.index.json")
    with Gallery(other, matcher, index=SMALL) as g:
        assert set(g.store.nearest(people["p030"], 5).names) <= {f"q{i}" for i in range(70)}
        assert built == [1]  # rebuilt from its own templates

