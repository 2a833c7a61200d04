"""The validation data a bundle keeps (``validation/``): a few real inputs and ONNX Runtime's
outputs of every graph set on them, as numpy ``.npz`` without pickles, written byte for byte the
same from the same arrays (:func:`save_npz`), so that an engine built anywhere is checked against
exactly what ONNX Runtime computed at export (:mod:`edgedml.runtime.inference.tensorrt.check`).
"""

from __future__ import annotations

from pathlib import Path

from . import precision_report

STORED_VALIDATION_IMAGES = 4  # kept in the bundle, for checking engines where they are built


def store_validation_inputs(staging: Path, images, runners: dict) -> dict:
    """Real inputs and ONNX Runtime's outputs of every graph set on them, kept in the bundle
    (``validation/``, numpy .npz, no pickles) so that an engine built anywhere is checked
    against exactly what ONNX Runtime computed here."""
    folder = staging / "validation"
    folder.mkdir()
    fp32 = runners["fp32"][0]({"images": images})
    feeds = precision_report.matcher_feeds(fp32["embedding"], fp32["local"], fp32.get("marginal"))
    save_npz(folder / "inputs.npz", {"images": images, **feeds})
    outputs = {}
    for name, (embedder, matcher) in runners.items():
        embedded = fp32 if name == "fp32" else embedder({"images": images})
        path = f"validation/outputs.{name}.npz"
        save_npz(staging / path, {**{f"embedder.{k}": v for k, v in embedded.items()},
                                  **{f"matcher.{k}": v for k, v in matcher(feeds).items()}})
        outputs[name] = path
    return {"inputs": "validation/inputs.npz", "outputs": outputs}


def save_npz(path: Path, arrays: dict) -> None:
    """``np.savez`` with every entry's zip time fixed at 1980-01-01 and the entries in the order
    given: the same arrays give the same bytes (no pickles)."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w",
                              force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(value), allow_pickle=False)
