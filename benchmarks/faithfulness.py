"""How faithful are the evidence maps? Deletion and insertion AUCs per method, set and head.

    python benchmarks/faithfulness.py               # → benchmarks/results/faithfulness.{json,md}, faithfulness_*.png
    python benchmarks/faithfulness.py --sets faces  # only the faces rows; the other rows are kept from the last run

For each set's test classes and each model, `edgedml.runtime.assurance.faithfulness.evaluate` on 20
seeded genuine pairs (the runtime, ONNX Runtime on the CPU): evidence, attention (grouping and
abe), occlusion sensitivity (g² extra embeddings) and a random order. Sets and models:
- flowers17 test (classes 09–17) and cub_birds test (39–76): the `objects` preset (DIML), and
  the grouping and abe models of `scripts/train_presets.py cub_grouping|cub_abe` where they exist;
- the face test split (orl_faces s21–s40, yalefaces 09–15; the photos where YuNet finds a face):
  the `faces` preset (dlib's face network, its descriptor as the global embedding, DIML regions
  on its 4×4 level), its bundle exported with YuNet, so each photo is cut as the door cuts it:
  YuNet → dlib's 150×150 chip (`benchmarks/face_composites.ensure_bundle`). A chip has a fixed
  layout, so this row also gets a cell profile (`cell_profile`, 100 pairs): where on the chip the
  evidence lies and where removing one cell costs the multi-scale and the structural score.
Targets (issue 14): evidence deletion AUC ≤ 0.8 × random's; evidence within 10% of occlusion's,
at ≥ 20× lower cost.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"
PAIRS = 20


def test_classes(folder: Path, first: int) -> Path:
    """A folder of links to the class folders of ``folder`` numbered ``first`` and above."""
    out = Path(tempfile.mkdtemp(prefix=f"{folder.name}-test-"))
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        if int(cls.name.split("_")[0]) >= first:
            (out / cls.name).symlink_to(cls, target_is_directory=True)
    return out


def face_test_classes(matcher) -> Path:
    """A folder of per-person folders of links to the face test photos where ``matcher``'s
    detector finds a face (a genuine pair needs both photos cut)."""
    from face_composites import people

    out = Path(tempfile.mkdtemp(prefix="faces-test-"))
    for name, files in people("test"):
        folder = out / name.replace("/", "_")
        folder.mkdir()
        for path in files:
            if matcher.views(path)[1]:
                (folder / path.name).symlink_to(path)
    return out


def bundle_for(name: str, checkpoint: str) -> Path:
    """An exported bundle of a preset or run checkpoint, made once under runs/bundles."""
    from edgedml.bundle_files import sha256_file
    from edgedml.models.presets import PRESETS, preset_file

    path = preset_file(checkpoint) if checkpoint in PRESETS else Path(checkpoint)
    out = ROOT / "runs" / "bundles" / f"{name}-{sha256_file(path)[:12]}"
    if not (out / "manifest.json").is_file():
        from edgedml.export.exporter import ExportOptions, export_bundle
        from edgedml.models import load_checkpoint

        export_bundle(load_checkpoint(checkpoint), out, ExportOptions(), source=f"{name}: {checkpoint}")
    return out


PROFILE_PAIRS = 100


def cell_profile(matcher, folder: Path, count: int, seed: int = 0) -> dict:
    """Where on a face chip the evidence lies and where removing a cell costs the score, over
    ``count`` seeded genuine pairs (the first photo explained): per cell (row-major g×g) the
    mean share of A's evidence, the mean drop of the multi-scale and of the structural score
    when that cell alone is set to the preprocessing mean (divided by the clean score), and per
    pair the Spearman correlation of the evidence with each drop."""
    from edgedml.runtime.assurance.faithfulness import _classes_with_pairs, cell_masks, draw_pairs

    def ranks(x: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(x, kind="stable"), kind="stable")

    shares, drops, rho = [], {"multiscale": [], "structural": []}, {"multiscale": [], "structural": []}
    for a, b in draw_pairs(*_classes_with_pairs(folder), count, seed):
        input_a, input_b = matcher.explain(a, b).inputs  # the network inputs of the pair
        reference, features_a = matcher._embed_batch(input_b[None]), matcher._embed_batch(input_a[None])
        evidence = matcher.match(features_a, reference)["query_evidence"][0]
        alone = np.stack([input_a] + [np.where(mask, 0.0, input_a).astype(np.float32)
                                      for mask in cell_masks(matcher.grid, input_a.shape[-1])])
        scores = matcher.match(reference, matcher._embed_batch(alone))
        shares.append(evidence / evidence.sum())
        for score in drops:
            drop = (scores[score][0] - scores[score][1:]) / scores[score][0]
            drops[score].append(drop)
            rho[score].append(float(np.corrcoef(ranks(evidence), ranks(drop))[0, 1]))
    grid = lambda rows: np.mean(rows, 0).reshape(matcher.grid, matcher.grid).round(4).tolist()  # noqa: E731
    return {"pairs": len(shares), "seed": seed, "evidence_share": grid(shares),
            "drop_multiscale": grid(drops["multiscale"]), "drop_structural": grid(drops["structural"]),
            "spearman_multiscale": float(np.mean(rho["multiscale"])),
            "spearman_structural": float(np.mean(rho["structural"]))}


def profile_markdown(key: str, result: dict) -> list[str]:
    """What a row with a cell profile says, in numbers, and the profile as g×g tables (rows top to
    bottom of the chip)."""
    profile, methods = result["cell_profile"], result["methods"]
    ev, rnd, occ = (methods[m] for m in ("evidence", "random", "occlusion"))
    share, drop = np.asarray(profile["evidence_share"]), np.asarray(profile["drop_multiscale"])
    cell = lambda flat: f"row {flat // share.shape[1] + 1}, column {flat % share.shape[1] + 1}"  # noqa: E731
    verdict = "lowers the score more than" if ev["deletion_auc_above_empty"] < rnd["deletion_auc_above_empty"] \
        else "lowers the score less than"
    lines = ["", f"**{key}.** Removing the most-evidenced cells first {verdict} removing them in random order: "
             f"deletion AUC above empty {ev['deletion_auc_above_empty']:.3f} for the evidence, "
             f"{rnd['deletion_auc_above_empty']:.3f} for random, {occ['deletion_auc_above_empty']:.3f} for occlusion "
             f"(insertion AUC {ev['insertion_auc']:.3f}, {rnd['insertion_auc']:.3f}, {occ['insertion_auc']:.3f}); an "
             f"empty chip still scores {ev['deletion_curve'][-1]:.2f} of the clean multi-scale score, which compresses "
             f"the plain AUCs. Over {profile['pairs']} pairs the evidence is highest at {cell(int(share.argmax()))} "
             f"(share {share.max():.3f}) and lowest at {cell(int(share.argmin()))} ({share.min():.3f}), while "
             f"removing {cell(int(drop.argmax()))} costs the most (multi-scale drop {drop.max():.3f}, against "
             f"{drop.reshape(-1)[share.argmax()]:.3f} at the evidence's top cell); the evidence's rank correlation "
             f"with the occlusion drop is {profile['spearman_multiscale']:.2f} (multi-scale) and "
             f"{profile['spearman_structural']:.2f} (structural score alone).",
             "", f"Per cell ({profile['pairs']} genuine pairs, seed {profile['seed']}; top row of the chip first): the "
             f"explained photo's mean share of the evidence, and the mean drop of the score (÷ the clean score) when "
             f"that cell alone is set to the mean.", ""]
    grids = {"evidence share": profile["evidence_share"], "multi-scale drop": profile["drop_multiscale"],
             "structural drop": profile["drop_structural"]}
    g = len(share)
    lines += ["| row | " + " | ".join(f"{name}, col {c + 1}" for name in grids for c in range(g)) + " |",
              "|---|" + "---|" * (g * len(grids))]
    for r in range(g):
        cells = (f"{grid[r][c]:.3f}" for grid in grids.values() for c in range(g))
        lines.append(f"| {r + 1} | " + " | ".join(cells) + " |")
    return lines


SETS = ("flowers17", "cub_birds", "faces")


def main(argv=None) -> int:
    import argparse

    import cv2
    from face_composites import ensure_bundle

    from edgedml.runtime.assurance.faithfulness import draw, evaluate
    from edgedml.runtime.matching.matcher import Matcher

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SETS),
                        help=f"comma-separated, of {', '.join(SETS)}: the rows to measure; the others are kept "
                             f"from benchmarks/results/faithfulness.json")
    args = parser.parse_args(argv)
    chosen = args.sets.split(",")
    if unknown := set(chosen) - set(SETS):
        parser.error(f"unknown sets {sorted(unknown)}; choose from {', '.join(SETS)}")
    results = ROOT / "benchmarks" / "results"
    runs = ROOT / "runs"
    models = {"diml (objects)": "objects"}
    for head in ("grouping", "abe"):
        if (runs / f"cub_{head}" / "best.safetensors").is_file():
            models[f"{head} (cub_{head})"] = str(runs / f"cub_{head}" / "best.safetensors")
    sets = {}
    if "flowers17" in chosen:
        sets["flowers17 test"] = [(name, lambda name=name: Matcher(bundle_for(name.split(" (")[1].rstrip(")"),
                                                                              models[name]), detector="none"),
                                   lambda _: test_classes(DATA / "flowers17", 9)) for name in models]
    if "cub_birds" in chosen:
        sets["cub_birds test"] = [(name, lambda name=name: Matcher(bundle_for(name.split(" (")[1].rstrip(")"),
                                                                              models[name]), detector="none"),
                                   lambda _: test_classes(DATA / "cub_birds", 39)) for name in models]
    if "faces" in chosen:  # the bundle's own face stage: YuNet → dlib's chip
        sets["faces test (YuNet → dlib chip)"] = [("diml (faces: dlib's network)",
                                                   lambda: Matcher(ensure_bundle(None)), face_test_classes)]
    previous = results / "faithfulness.json"
    kept = json.loads(previous.read_text())["results"] if previous.is_file() else {}
    kept = {key: value for key, value in kept.items()
            if key.split(" | ")[0].split()[0] in SETS and key.split(" | ")[0].split()[0] not in chosen}
    report = {"pairs": PAIRS, "results": {}}
    started = time.perf_counter()
    for set_name, entries in sets.items():
        for name, make_matcher, make_folder in entries:
            matcher = make_matcher()
            folder = make_folder(matcher)
            result = evaluate(matcher, folder, PAIRS, seed=0)
            result["measured"] = time.strftime("%Y-%m-%d")
            if set_name.startswith("faces"):  # a chip has a fixed layout: where the evidence and the score lie
                result["cell_profile"] = cell_profile(matcher, folder, PROFILE_PAIRS)
            report["results"][f"{set_name} | {name}"] = result
            print(set_name, name, {k: round(v["deletion_auc"], 3) for k, v in result["methods"].items()}, flush=True)
            slug = (set_name.split()[0] + "_" + name.split()[0]).replace("/", "_")
            cv2.imwrite(str(results / f"faithfulness_{slug}.png"),
                        draw(result, f"{set_name}, {name}: score / clean score, {PAIRS} genuine pairs"
                             .replace("→", "->")))  # OpenCV draws ASCII only
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["sets_measured"] = chosen
    report["results"] = dict(sorted({**kept, **report["results"]}.items(),
                                    key=lambda item: SETS.index(item[0].split(" | ")[0].split()[0])))
    lines = [f"`python benchmarks/faithfulness.py --sets {','.join(chosen)}` measured the rows dated below "
             f"({report['seconds']:.0f} s); the others are kept from an earlier run of this script (their models' "
             f"checkpoints are not all in this checkout; `git log benchmarks/results/faithfulness.json`). "
             f"{PAIRS} seeded genuine pairs per row; the score is the multi-scale score.", "",
             "| set | model | method | deletion AUC ↓ | deletion AUC above empty ↓ | insertion AUC ↑ | extra ms |",
             "|---|---|---|---|---|---|---|"]
    notes = []
    for key, result in report["results"].items():
        set_name, name = key.split(" | ")
        methods = result["methods"]
        for method, m in methods.items():
            lines.append(f"| {set_name} | {name} | {method} | {m['deletion_auc']:.3f} | "
                         f"{m['deletion_auc_above_empty']:.3f} | {m['insertion_auc']:.3f} | {m['extra_ms']:.1f} |")
        ev, rnd, occ = methods["evidence"], methods["random"], methods["occlusion"]
        notes.append(f"- {set_name}, {name}: evidence/random deletion AUC "
                     f"{ev['deletion_auc'] / rnd['deletion_auc']:.3f} "
                     f"(target ≤ 0.8: {'met' if ev['deletion_auc'] <= 0.8 * rnd['deletion_auc'] else 'missed'}); "
                     f"evidence/occlusion {ev['deletion_auc'] / occ['deletion_auc']:.3f} (target ≤ 1.10: "
                     f"{'met' if ev['deletion_auc'] <= 1.1 * occ['deletion_auc'] else 'missed'}); occlusion costs "
                     f"{occ['extra_ms']:.0f} ms more per explanation, evidence {ev['extra_ms']:.2f} ms"
                     + (f" (measured {result['measured']})" if "measured" in result else " (an earlier run)"))
    for key, result in report["results"].items():
        if "cell_profile" in result:
            notes += profile_markdown(key, result)
    (results / "faithfulness.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "faithfulness.md").write_text("\n".join(lines + [""] + notes) + "\n")
    print("\n".join(lines + [""] + notes))
    return 0


if __name__ == "__main__":
    import logging

    logging.basicConfig(format="%(message)s")  # the library logs its progress lines; a script shows them
    logging.getLogger("edgedml").setLevel(logging.INFO)
    raise SystemExit(main())
