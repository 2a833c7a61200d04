"""Face verification on people no preset trained on, edgedml's face stage against dlib's own
pipeline, accuracy and time, in one run.

    python benchmarks/face_verification.py --model faces     # → benchmarks/results/face_verification.{json,md}
                                                             #   and face_verification_roc.png
    python benchmarks/face_verification.py --model ckpt.safetensors   # any face model checkpoint

Test people: orl_faces s21–s40 and yalefaces subject09–15 (277 photos of 27 people). Every pair
of their photos is scored (genuine: same person; impostor: different people).

- dlib (the pipeline of face_recognition and of most door tutorials): HOG detector
  (``get_frontal_face_detector``, one upsampling), the 5-point ``shape_predictor``,
  ``get_face_chip(150, 0.25)``, ``compute_face_descriptor``; scored by −Euclidean distance (as
  face_recognition compares) and by cosine. dlib-bin is the oracle here; edgedml never imports it.
- edgedml: the model exported once (:mod:`face_bundle`: fp32, fp16, int8-cpu, with YuNet),
  each photo embedded by the runtime ``Matcher`` with the bundle's own face stage (YuNet → the
  chip its detector settings record → embedder), every pair scored by the bundle's matcher graph
  (one query against all other photos): global (cosine of the embeddings), structural (Σ T ⊙ s)
  and multi-scale (their sum).

Two protocols: "both detect" (the pairs of photos where both pipelines found a face) and "misses
count" (every pair; a pair with a photo its pipeline found no face in scores −inf, so a
genuine pair is a false reject and an impostor pair a correct reject). Per row: EER, TAR at FAR
1e-3 and 1e-4, Recall@1 (each photo against all others; a photo without a face is a miss). The
ROC picture (:mod:`roc_plot`, every threshold) is of the "both detect" pairs.

Time, one thread (set below before numpy, OpenCV, ONNX Runtime or dlib load; ONNX Runtime
sessions with one intra-op thread), median of 50 runs after 5 warm-up runs: the embedder alone
on one 150×150 chip (dlib's descriptor vs each edgedml graph, with its preprocessing), and the
whole pipeline per decoded photo (dlib: HOG + landmarks + chip + descriptor; edgedml:
``Matcher.embed``: YuNet + chip + embedder), on ORL (92×112) and Yale (320×243) photos.

The old ``--photos`` mode (whole photos, no detector) is gone: a face network works on its chip.
ORL (AT&T Laboratories Cambridge) and Yale Faces (Yale University) are research-use sets.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # run, not imported (occlusion.py and faithfulness.py import TEST and face_crops)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"  # one thread for every library, before any of them loads

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
YUNET = ROOT.parent / "shared" / "models" / "face_detection_yunet_2026may.onnx"
FARS = (1e-3, 1e-4)
WARMUP, RUNS = 5, 50
TIMED_PHOTOS = 10  # per data set, cycled through the timed runs
PROTOCOLS = {"both": "images both detect", "all": "misses count as failures"}
# the test people, as benchmarks/occlusion.py and faithfulness.py take them
TEST = {"orl_faces": [f"s{i:02d}" for i in range(21, 41)], "yalefaces": [f"subject{i:02d}" for i in range(9, 16)]}


def face_crops(names, chip: str = "square") -> list[Path]:
    """The named data sets as the face stage cuts them (YuNet, default DetectorSettings with
    ``chip``), made once under runs/face_crops (square) or runs/face_crops_<chip>: what
    benchmarks/occlusion.py and faithfulness.py read."""
    from derive_dlib_chip_points import DATA

    from edgedml.runtime.faces.detection import DetectorSettings, YuNetDetector
    from edgedml.runtime.faces.face_crops import cropped_copy

    detector = YuNetDetector(YUNET, DetectorSettings(chip=chip))
    folder = ROOT / "runs" / ("face_crops" if chip == "square" else f"face_crops_{chip}")
    return [cropped_copy(DATA / name, folder / name, detector) for name in names]


class DlibPipeline:
    """dlib's own face pipeline (face_recognition's): photo → chip → 128-d descriptor."""

    def __init__(self):
        import dlib
        from derive_dlib_chip_points import dlib_tools

        from edgedml.models.dlib_files import dlib_model_file

        self.dlib = dlib
        self.hog, self.predictor = dlib_tools()  # HOG detector, 5-point shape predictor
        self.net = dlib.face_recognition_model_v1(str(dlib_model_file()))

    def chip(self, rgb: np.ndarray) -> np.ndarray | None:
        """RGB uint8 (H, W, 3) → dlib's 150×150 chip of the largest face, or None."""
        from derive_dlib_chip_points import CHIP_PADDING, CHIP_SIZE

        boxes = self.hog(rgb, 1)  # one upsampling, as face_recognition does
        if len(boxes) == 0:
            return None
        shape = self.predictor(rgb, max(boxes, key=lambda b: b.area()))
        return self.dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)

    def descriptor(self, chip: np.ndarray) -> np.ndarray:
        """(150, 150, 3) chip → (128,) descriptor."""
        return np.array(self.net.compute_face_descriptor(chip))

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        chip = self.chip(rgb)
        return None if chip is None else self.descriptor(chip)


def one_thread_matcher(bundle: Path, precision: str):
    """The runtime Matcher of one graph set, its ONNX Runtime sessions on one CPU thread, the
    bundle's own face stage."""
    from edgedml.runtime import Matcher
    from edgedml.runtime.inference.backends import OnnxRuntimeBackend

    matcher = Matcher(bundle, backend="onnxruntime", precision=precision)
    matcher.backend = OnnxRuntimeBackend(matcher.bundle, matcher.manifest, precision,
                                         providers=["CPUExecutionProvider"], threads=1)
    return matcher


def embed_photos(matcher, bgr: list[np.ndarray]):
    """Each photo through the matcher's face stage and embedder → (Features of the photos with
    a face, found (N,) bool)."""
    from edgedml.runtime.faces.detection import NoFaceFound
    from edgedml.runtime.matching.features import Features

    parts, found = [], []
    for image in bgr:
        try:
            parts.append(matcher.embed(image))
            found.append(True)
        except NoFaceFound:
            found.append(False)
    return Features.concat(parts), np.array(found)


def edgedml_scores(matcher, feats, found: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    """All-pairs scores by the matcher graph, (N, N) each, −inf where a photo had no face:
    {"global", "structural", "multiscale"}; and the largest gap between the graph's global score
    (multiscale − structural) and the cosine of the embeddings."""
    n, index = len(found), np.flatnonzero(found)
    scores = {name: np.full((n, n), -np.inf) for name in ("global", "structural", "multiscale")}
    for row, i in enumerate(index):
        out = matcher.match(feats[row], feats)
        structural, multiscale = out["structural"].astype(np.float64), out["multiscale"].astype(np.float64)
        scores["structural"][i, index] = structural
        scores["multiscale"][i, index] = multiscale
        scores["global"][i, index] = multiscale - structural
    cosine = feats.embedding.astype(np.float64) @ feats.embedding.T.astype(np.float64)
    gap = float(np.abs(scores["global"][np.ix_(index, index)] - cosine).max())
    return scores, gap


def oracle_rows(dlib_pipe: DlibPipeline, matcher, bgr: list[np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
    """dlib's own descriptor (dlib-bin) of the chips edgedml's face stage cuts, scored as dlib
    scores: it separates what the chip does from what the scoring does. Also the largest
    difference between the matcher's fp32 embedding and that descriptor, normalised."""
    chips = [matcher.views(image)[1] for image in bgr]
    descriptors = [dlib_pipe.descriptor(v[0].pixels) if v else None for v in chips]
    kept = [i for i, d in enumerate(descriptors) if d is not None]
    d = np.stack([descriptors[i] for i in kept])
    ours = matcher.embed([bgr[i] for i in kept]).embedding
    gap = float(np.abs(ours - d / np.linalg.norm(d, axis=1, keepdims=True)).max())
    scores = dlib_scores(descriptors)
    return {"−Euclidean" if k == "euclidean" else k: s for k, s in scores.items()}, gap


def dlib_scores(descriptors: list[np.ndarray | None]) -> dict[str, np.ndarray]:
    """All-pairs −Euclidean and cosine scores of dlib's descriptors (N, N), −inf for a miss."""
    found = np.array([d is not None for d in descriptors])
    index = np.flatnonzero(found)
    d = np.stack([descriptors[i] for i in index])
    unit = d / np.linalg.norm(d, axis=1, keepdims=True)
    n = len(descriptors)
    out = {name: np.full((n, n), -np.inf) for name in ("euclidean", "cosine")}
    out["euclidean"][np.ix_(index, index)] = -np.linalg.norm(d[:, None] - d[None], axis=2)
    out["cosine"][np.ix_(index, index)] = unit @ unit.T
    return out


def metrics(scores: np.ndarray, labels: np.ndarray, found: np.ndarray, keep: np.ndarray) -> dict:
    """Verification of the photos ``keep`` (N,) bool: every pair i < j scored scores[i, j]
    (−inf for a photo its pipeline missed, ``found`` False), and Recall@1 of each kept photo
    against the other kept photos (a missed photo is a failure)."""
    from edgedml.runtime.assurance.error_rates import equal_error_rate, far_tar, threshold_at_far

    index = np.flatnonzero(keep)
    s, lab, hit = scores[np.ix_(index, index)], labels[index], found[index]
    upper = np.triu_indices(len(index), k=1)
    same = lab[upper[0]] == lab[upper[1]]
    genuine, impostor = s[upper][same], s[upper][~same]
    eer, at = equal_error_rate(genuine, impostor)
    row = {"eer": eer, "eer_threshold": at, "genuine_pairs": int(same.sum()), "impostor_pairs": int((~same).sum()),
           "genuine_pairs_scored": int(np.isfinite(genuine).sum()),
           "impostor_pairs_scored": int(np.isfinite(impostor).sum())}
    for far in FARS:
        row[f"tar@far={far:g}"] = far_tar(genuine, impostor, threshold_at_far(impostor, far))[1]
    masked = s.copy()
    np.fill_diagonal(masked, -np.inf)
    best = masked.argmax(1)
    row["recall@1"] = float(((lab[best] == lab) & hit & np.isfinite(masked[np.arange(len(index)), best])).mean())
    return row


def timed(calls: dict, items: dict, warmup: int = WARMUP, runs: int = RUNS) -> dict:
    """{name: median wall time of ``calls[name](item)``} over ``runs`` calls cycling through
    ``items[name]``, after ``warmup`` calls. The systems take turns call by call, so that a
    shared machine's changing load falls on all of them alike. cpu_per_wall (process CPU time /
    wall time of those calls) ≤ 1 says one thread ran."""
    for k in range(warmup):
        for name, fn in calls.items():
            fn(items[name][k % len(items[name])])
    times = {name: [] for name in calls}
    cpu = dict.fromkeys(calls, 0.0)
    for k in range(runs):
        for name, fn in calls.items():
            item = items[name][k % len(items[name])]
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(item)
            cpu[name] += time.process_time() - start_cpu
            times[name].append(time.perf_counter() - start)
    return {name: {"median_ms": round(1000 * float(np.median(t)), 2),
                   "p90_ms": round(1000 * float(np.percentile(t, 90)), 2), "runs": runs, "warmup": warmup,
                   "cpu_per_wall": round(cpu[name] / sum(t), 2)} for name, t in times.items()}


def timings(dlib_pipe: DlibPipeline, matchers: dict, rgb: list, sets: np.ndarray, both: np.ndarray) -> dict:
    """Embedder alone per chip, and the whole pipeline per photo, of dlib and each precision."""
    from edgedml.runtime.inference.preprocess import to_network_input

    any_matcher = next(iter(matchers.values()))
    spec = any_matcher.spec
    chosen = {name: [i for i in np.flatnonzero(both & (sets == name))][:TIMED_PHOTOS] for name in np.unique(sets)}
    chips = [any_matcher.views(rgb[i][..., ::-1])[1][0].pixels for ids in chosen.values() for i in ids]
    out = {"chip_photos": {k: len(v) for k, v in chosen.items()}, "pipeline": {}}
    embedders = {"dlib": dlib_pipe.descriptor} | {
        p: (lambda c, m=m: m.backend.run("embedder", {"images": to_network_input(c, spec)[None]}))
        for p, m in matchers.items()}
    out["embedder"] = timed(embedders, dict.fromkeys(embedders, chips))
    for name, ids in chosen.items():
        photos = [rgb[i] for i in ids]
        bgr = [np.ascontiguousarray(p[..., ::-1]) for p in photos]
        pipelines = {"dlib": dlib_pipe} | {p: m.embed for p, m in matchers.items()}
        shape = photos[0].shape
        out["pipeline"][name] = {"size": f"{shape[1]}×{shape[0]}",
                                 **timed(pipelines, {k: photos if k == "dlib" else bgr for k in pipelines})}
    return out


def cpu_model() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_test_photos():
    """(rgb list, person labels (N,), data set of each (N,), relative paths) of the test people."""
    from derive_dlib_chip_points import DATA, PEOPLE, photos

    from edgedml.runtime.inference.image import load_image

    listed = photos(PEOPLE["test"])
    return ([load_image(p) for _, p in listed], np.array([person for person, _ in listed]),
            np.array([person.split("/")[0] for person, _ in listed]),
            [str(p.relative_to(DATA)) for _, p in listed])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="faces", help="a face preset name or a checkpoint (default: faces)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--fresh", action="store_true", help="export the bundle again even if a cached one matches")
    args = parser.parse_args()
    from derive_dlib_chip_points import DATA, PEOPLE

    for name in PEOPLE["test"]:
        if not (DATA / name).is_dir():
            sys.exit(f"{DATA / name} not found: this benchmark needs ../shared/data")
    if not YUNET.is_file():
        sys.exit(f"{YUNET} not found: this benchmark needs the YuNet face detector there")
    started = time.perf_counter()
    import cv2
    import dlib
    import onnxruntime
    import roc_plot
    from face_bundle import PRECISIONS, cached_bundle

    import edgedml

    cv2.setNumThreads(1)
    bundle, model_facts = cached_bundle(args.model, YUNET, fresh=args.fresh)
    rgb, labels, sets, paths = load_test_photos()
    n = len(rgb)

    print(f"dlib's pipeline on {n} photos", flush=True)
    dlib_pipe = DlibPipeline()
    descriptors = [dlib_pipe(image) for image in rgb]
    dlib_found = np.array([d is not None for d in descriptors])
    rows, curves_of = {}, {}
    for name, s in dlib_scores(descriptors).items():
        rows[f"dlib, {'−Euclidean' if name == 'euclidean' else 'cosine'}"] = ("dlib", s)

    matchers, found_by, gaps = {}, {}, {}
    bgr = [np.ascontiguousarray(image[..., ::-1]) for image in rgb]
    for precision in PRECISIONS:
        print(f"edgedml {precision} on {n} photos", flush=True)
        matcher = matchers[precision] = one_thread_matcher(bundle, precision)
        feats, found_by[precision] = embed_photos(matcher, bgr)
        scores, gaps[precision] = edgedml_scores(matcher, feats, found_by[precision])
        for score, s in scores.items():
            rows[f"edgedml {precision}, {'multi-scale' if score == 'multiscale' else score}"] = (precision, s)
    if matchers["fp32"].detector is None or matchers["fp32"].detector.settings.chip != model_facts["chip"]:
        raise SystemExit(f"the bundle {bundle} does not cut {model_facts['chip']} chips; rerun with --fresh")
    yunet_found = found_by["fp32"]
    if any((f != yunet_found).any() for f in found_by.values()):
        raise SystemExit("the face stage found faces in different photos per precision; it must not depend on it")
    both = dlib_found & yunet_found
    found = {"dlib": dlib_found, "oracle": yunet_found, **{p: yunet_found for p in PRECISIONS}}

    print("dlib's descriptor of edgedml's chips (the oracle)", flush=True)
    oracle, oracle_gap = oracle_rows(dlib_pipe, matchers["fp32"], bgr)
    rows = {**{k: v for k, v in rows.items() if k.startswith("dlib")},
            **{f"dlib's descriptor of edgedml's chip, {k}": ("oracle", s) for k, s in oracle.items()},
            **{k: v for k, v in rows.items() if not k.startswith("dlib")}}

    report_rows = {}
    for name, (pipeline, s) in rows.items():
        report_rows[name] = {"photos_detected": int(found[pipeline].sum()),
                             "both": metrics(s, labels, found[pipeline], both),
                             "all": metrics(s, labels, found[pipeline], np.ones(n, bool))}
        curves_of[name] = s

    print("timing (one thread)", flush=True)
    times = timings(dlib_pipe, matchers, rgb, sets, both)

    def ratio(entry, precision):
        return round(entry["dlib"]["median_ms"] / entry[precision]["median_ms"], 2)

    times["dlib_over_edgedml"] = {"embedder": {p: ratio(times["embedder"], p) for p in PRECISIONS},
                                  "pipeline": {k: {p: ratio(v, p) for p in PRECISIONS}
                                               for k, v in times["pipeline"].items()}}
    report = {
        "command": "python benchmarks/face_verification.py" + (f" --model {args.model}" if args.model else ""),
        "model": model_facts,
        "test_people": {k: f"{v[0]}–{v[-1]}" for k, v in PEOPLE["test"].items()},
        "photos": n, "people": int(len(set(labels))),
        "missed": {"dlib": [paths[i] for i in np.flatnonzero(~dlib_found)],
                   "yunet": [paths[i] for i in np.flatnonzero(~yunet_found)]},
        "photos_both_detect": int(both.sum()),
        "protocols": PROTOCOLS,
        "rows": report_rows,
        "graph_global_vs_embedding_cosine": gaps,
        "fp32_embedding_vs_dlib_descriptor_max_abs": oracle_gap,
        "timing": times,
        "machine": {"processor": cpu_model(), "cpu_count": os.cpu_count(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
                    "threads": "one (OMP/OPENBLAS/MKL_NUM_THREADS=1, cv2.setNumThreads(1), ORT intra_op 1)"},
        "versions": {"edgedml": edgedml.__version__, "dlib": dlib.__version__, "onnxruntime": onnxruntime.__version__,
                     "opencv": cv2.__version__, "numpy": np.__version__},
        "backend": matchers["fp32"].backend.describe(),
        "face_stage": {"detector": matchers["fp32"].detector.describe(), "cropping": matchers["fp32"].cropping},
    }
    report["targets"] = targets(report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "face_verification.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (results / "face_verification.md").write_text(markdown(report))
    pick = ("dlib, −Euclidean", "dlib, cosine", "edgedml fp32, global", "edgedml fp32, multi-scale",
            "edgedml int8-cpu, global", "edgedml int8-cpu, multi-scale")
    curves = {}
    for name in pick:
        s = curves_of[name][np.ix_(np.flatnonzero(both), np.flatnonzero(both))]
        lab = labels[both]
        upper = np.triu_indices(len(lab), k=1)
        same = lab[upper[0]] == lab[upper[1]]
        curves[name.replace("−", "-")] = (s[upper][same], s[upper][~same])
    cv2.imwrite(str(results / "face_verification_roc.png"), roc_plot.draw(curves))
    print(markdown(report))
    return 0


def targets(report: dict) -> list[dict]:
    """The issue's targets, each met or missed, on both protocols."""
    rows, out = report["rows"], []
    for protocol in PROTOCOLS:
        eer = {name: row[protocol]["eer"] for name, row in rows.items()}
        out.append({"target": f"edgedml fp32 global EER ≤ dlib's own (−Euclidean) EER, {PROTOCOLS[protocol]}",
                    "values": [eer["edgedml fp32, global"], eer["dlib, −Euclidean"]],
                    "met": eer["edgedml fp32, global"] <= eer["dlib, −Euclidean"]})
        out.append({"target": f"edgedml fp32 multi-scale EER ≤ global EER, {PROTOCOLS[protocol]}",
                    "values": [eer["edgedml fp32, multi-scale"], eer["edgedml fp32, global"]],
                    "met": eer["edgedml fp32, multi-scale"] <= eer["edgedml fp32, global"]})
        for score in ("global", "multi-scale"):
            int8, fp32 = eer[f"edgedml int8-cpu, {score}"], eer[f"edgedml fp32, {score}"]
            out.append({"target": f"int8-cpu {score} EER ≤ fp32's + 0.003, {PROTOCOLS[protocol]}",
                        "values": [int8, fp32], "met": int8 <= fp32 + 0.003})
    for precision, r in report["timing"]["dlib_over_edgedml"]["embedder"].items():
        out.append({"target": f"edgedml {precision} embedder ≤ 1/5 of dlib's descriptor time (one thread)",
                    "values": [report["timing"]["embedder"][precision]["median_ms"],
                               report["timing"]["embedder"]["dlib"]["median_ms"]], "met": r >= 5})
    return out


def markdown(report: dict) -> str:
    m = report["model"]
    cfg = m["model_config"]
    from edgedml.models.presets import PRESETS

    what = (f"the `{m['model']}` preset" if m["model"] in PRESETS else
            f"`{m['model_file']}`, a checkpoint that is not a preset (the faces preset had not become the dlib "
            f"model when this ran; rerun with `--model faces` once it has)")
    lines = [f"Produced by `{report['command']}` in {report['seconds']:.0f} s "
             f"({report['machine']['cpu_count']} CPU cores, shared; {report['machine']['processor']}).", "",
             f"model: {what}; {cfg['backbone']}, head {cfg['head']}, projection {cfg['projection']}, regions "
             f"{cfg['grid']}×{cfg['grid']} of level {cfg['feature_level']} ({cfg['region_dim']}-d), "
             f"global {cfg['global_feature']}; {m['stored_tensors']} tensors stored beside the backbone's wheel"
             + (" (every weight is the wheel's: nothing trained)" if m["stored_tensors"] == 0 else "")
             + f"; sha256 {m['model_sha256'][:16]}…; {m['chip']} chips.", "",
             f"{report['photos']} photos of {report['people']} people no preset trained on "
             f"({', '.join(f'{k} {v}' for k, v in report['test_people'].items())}). dlib's HOG found a face in "
             f"{report['rows']['dlib, −Euclidean']['photos_detected']}, YuNet in "
             f"{report['rows']['edgedml fp32, global']['photos_detected']}, both in "
             f"{report['photos_both_detect']}.", ""]
    first = next(iter(report["rows"].values()))
    for protocol, title in PROTOCOLS.items():
        p = first[protocol]
        lines += [f"**{title}** ({p['genuine_pairs']} genuine / {p['impostor_pairs']} impostor pairs"
                  + (", a pair with a missed photo scores −inf" if protocol == "all" else "") + ")", "",
                  "| pipeline, score | photos detected | EER | TAR @ FAR 1e-3 | TAR @ FAR 1e-4 | Recall@1 |",
                  "|---|---|---|---|---|---|"]
        for name, row in report["rows"].items():
            r = row[protocol]
            lines.append(f"| {name} | {row['photos_detected']} | {r['eer']:.4f} | {r['tar@far=0.001']:.3f} | "
                         f"{r['tar@far=0.0001']:.3f} | {r['recall@1']:.3f} |")
        lines.append("")
    t = report["timing"]
    lines += [f"**time, one thread** (median ms of {RUNS} runs after {WARMUP} warm-up, the systems taking turns "
              f"call by call; dlib / edgedml in brackets)", "",
              "| | dlib | " + " | ".join(f"edgedml {p}" for p in t["dlib_over_edgedml"]["embedder"]) + " |",
              "|---|---|" + "---|" * len(t["dlib_over_edgedml"]["embedder"])]

    def cells(entry, ratios):
        return " | ".join(f"{entry[p]['median_ms']:.1f} ({r:.1f}×)" for p, r in ratios.items())

    lines.append(f"| embedder, one 150×150 chip | {t['embedder']['dlib']['median_ms']:.1f} | "
                 f"{cells(t['embedder'], t['dlib_over_edgedml']['embedder'])} |")
    for name, entry in t["pipeline"].items():
        lines.append(f"| whole pipeline, {name} photo ({entry['size']}) | {entry['dlib']['median_ms']:.1f} | "
                     f"{cells(entry, t['dlib_over_edgedml']['pipeline'][name])} |")
    lines += ["", "Targets:", ""]
    for target in report["targets"]:
        a, b = target["values"]
        lines.append(f"- {target['target']}: {a:.4g} vs {b:.4g}: **{'met' if target['met'] else 'missed'}**")
    rows = report["rows"]
    g, ms = rows["edgedml fp32, global"]["both"], rows["edgedml fp32, multi-scale"]["both"]
    helps = ms["eer"] <= g["eer"] and ms["tar@far=0.0001"] >= g["tar@far=0.0001"]
    hurts = ms["eer"] > g["eer"] and ms["tar@far=0.0001"] < g["tar@far=0.0001"]
    verdict = ("helps faces here" if helps else "does not help faces here" if hurts else
               "helps at one operating point and not at the other")
    lines += ["", f"The structural term {verdict} (fp32, images both detect): multi-scale EER {ms['eer']:.4f} vs "
                  f"global {g['eer']:.4f}, TAR @ FAR 1e-4 {ms['tar@far=0.0001']:.3f} vs {g['tar@far=0.0001']:.3f}; "
                  f"structural alone: EER {rows['edgedml fp32, structural']['both']['eer']:.4f}."]
    o = {k: rows[f"dlib's descriptor of edgedml's chip, {k}"]["both"]["eer"] for k in ("−Euclidean", "cosine")}
    own = {k: rows[f"dlib, {k}"]["both"]["eer"] for k in ("−Euclidean", "cosine")}
    swap = (o["−Euclidean"] < o["cosine"]) != (own["−Euclidean"] < own["cosine"])
    lines += ["", f"edgedml's global score is the cosine of dlib's descriptor (fp32 embedding = dlib-bin's descriptor "
                  f"of the same chip, normalised, to {report['fp32_embedding_vs_dlib_descriptor_max_abs']:.1e}). "
                  f"dlib's own descriptor of edgedml's chips scores EER {o['−Euclidean']:.4f} by −Euclidean and "
                  f"{o['cosine']:.4f} by cosine; of dlib's own chips {own['−Euclidean']:.4f} and {own['cosine']:.4f}"
                  + (": the better of the two scores swaps with the chip." if swap else ".")]
    cpu = [e["cpu_per_wall"] for e in (*t["embedder"].values(), *(x for v in t["pipeline"].values()
                                                                    for k, x in v.items() if k != "size"))]
    lines += ["", f"Process CPU time / wall time over the timed runs: {min(cpu):.2f}–{max(cpu):.2f} (≤ 1: one "
                  f"thread; below 1, the shared machine's other work took the rest)."]
    both = first["both"]
    lines += ["", "ROC of the pairs both detect: `face_verification_roc.png`."]
    lines += ["", f"One genuine pair is {1 / both['genuine_pairs']:.4f} of the genuine pairs, and FAR 1e-4 lets "
                  f"{int(1e-4 * both['impostor_pairs'])} of {both['impostor_pairs']} impostor pairs pass: EERs this "
                  f"low differ by a pair or two. Global scores come from the matcher graph (multi-scale − "
                  f"structural; largest gap to the embeddings' cosine: "
                  + ", ".join(f"{p} {v:.1e}" for p, v in report["graph_global_vs_embedding_cosine"].items())
                  + ").", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import logging

    logging.basicConfig(format="%(message)s")  # the library logs its progress lines; a script shows them
    logging.getLogger("edgedml").setLevel(logging.INFO)
    sys.exit(main())
