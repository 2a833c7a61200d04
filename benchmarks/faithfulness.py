"""How faithful are the evidence maps? Deletion and insertion AUCs per method, set and head.

    python benchmarks/faithfulness.py     # → benchmarks/results/faithfulness.{json,md} and faithfulness_*.png

For each set's test classes and each model, `edgedml.runtime.faithfulness.evaluate` on 20
seeded genuine pairs (the runtime, ONNX Runtime on the CPU): evidence, attention (grouping and
abe), occlusion sensitivity (g² extra embeddings) and a random order. Sets and models:
- flowers17 test (classes 09–17) and cub_birds test (39–76): the `objects` preset (DIML), and
  the grouping and abe models of `scripts/train_presets.py cub_grouping|cub_abe` where they exist;
- the face test split (orl_faces s21–s40, yalefaces 09–15) on YuNet's crops: the `faces` preset.
Targets (issue 14): evidence deletion AUC ≤ 0.8 × random's; evidence within 10% of occlusion's,
at ≥ 20× lower cost.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

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


def face_test_classes() -> Path:
    from face_verification import TEST, face_crops

    out = Path(tempfile.mkdtemp(prefix="faces-test-"))
    for root, names in zip(face_crops(TEST), TEST.values()):
        for name in names:
            (out / f"{root.name}_{name}").symlink_to(root / name, target_is_directory=True)
    return out


def bundle_for(name: str, checkpoint: str) -> Path:
    """An exported bundle of a preset or run checkpoint, made once under runs/bundles."""
    from edgedml.bundle import sha256_file
    from edgedml.models.presets import PRESETS, preset_file

    path = preset_file(checkpoint) if checkpoint in PRESETS else Path(checkpoint)
    out = ROOT / "runs" / "bundles" / f"{name}-{sha256_file(path)[:12]}"
    if not (out / "manifest.json").is_file():
        from edgedml.export.exporter import ExportOptions, export_bundle
        from edgedml.models import load_checkpoint

        export_bundle(load_checkpoint(checkpoint), out, ExportOptions(), source=f"{name}: {checkpoint}")
    return out


def main() -> int:
    import cv2

    from edgedml.runtime.faithfulness import draw, evaluate
    from edgedml.runtime.matcher import Matcher

    runs = ROOT / "runs"
    models = {"diml (objects)": "objects"}
    for head in ("grouping", "abe"):
        if (runs / f"cub_{head}" / "best.safetensors").is_file():
            models[f"{head} (cub_{head})"] = str(runs / f"cub_{head}" / "best.safetensors")
    sets = {"flowers17 test": (test_classes(DATA / "flowers17", 9), list(models)),
            "cub_birds test": (test_classes(DATA / "cub_birds", 39), list(models)),
            "faces test (YuNet crops)": (face_test_classes(), ["diml (faces)"])}
    models["diml (faces)"] = "faces"
    report = {"pairs": PAIRS, "results": {}}
    started = time.perf_counter()
    for set_name, (folder, names) in sets.items():
        for name in names:
            matcher = Matcher(bundle_for(name.split(" (")[1].rstrip(")"), models[name]), detector="none")
            result = evaluate(matcher, folder, PAIRS, seed=0)
            report["results"][f"{set_name} | {name}"] = result
            print(set_name, name, {k: round(v["deletion_auc"], 3) for k, v in result["methods"].items()}, flush=True)
            slug = (set_name.split()[0] + "_" + name.split()[0]).replace("/", "_")
            cv2.imwrite(str(ROOT / "benchmarks" / "results" / f"faithfulness_{slug}.png"),
                        draw(result, f"{set_name}, {name}: score / clean score, {PAIRS} genuine pairs"))
    report["seconds"] = round(time.perf_counter() - started, 1)
    lines = ["| set | model | method | deletion AUC ↓ | deletion AUC above empty ↓ | insertion AUC ↑ | extra ms |",
             "|---|---|---|---|---|---|---|"]
    notes = []
    for key, result in report["results"].items():
        set_name, name = key.split(" | ")
        methods = result["methods"]
        for method, m in methods.items():
            lines.append(f"| {set_name} | {name} | {method} | {m['deletion_auc']:.3f} | "
                         f"{m['deletion_auc_above_empty']:.3f} | {m['insertion_auc']:.3f} | {m['extra_ms']:.1f} |")
        ev, rnd, occ = methods["evidence"], methods["random"], methods["occlusion"]
        notes.append(f"- {set_name}, {name}: evidence/random deletion AUC {ev['deletion_auc'] / rnd['deletion_auc']:.3f} "
                     f"(target ≤ 0.8: {'met' if ev['deletion_auc'] <= 0.8 * rnd['deletion_auc'] else 'missed'}); "
                     f"evidence/occlusion {ev['deletion_auc'] / occ['deletion_auc']:.3f} (target ≤ 1.10: "
                     f"{'met' if ev['deletion_auc'] <= 1.1 * occ['deletion_auc'] else 'missed'}); occlusion costs "
                     f"{occ['extra_ms']:.0f} ms more per explanation, evidence {ev['extra_ms']:.2f} ms")
    results = ROOT / "benchmarks" / "results"
    (results / "faithfulness.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "faithfulness.md").write_text("\n".join(lines + [""] + notes) + "\n")
    print("\n".join(lines + [""] + notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
