"""An exact ROC picture for systems that err rarely, several curves on one canvas: every threshold,
the false accept rate on a log axis down to one impostor pair, the true accept rate from
``tar_floor`` to 1. (The picture ``edgedml calibrate`` writes into a bundle,
``edgedml.runtime.assurance.calibration_picture.draw_roc``, stops its FAR axis at 1e-4.)"""

from __future__ import annotations

import numpy as np

from edgedml.runtime.assurance.error_rates import roc_points

COLOURS = ((200, 80, 0), (0, 140, 255), (60, 160, 60), (160, 60, 160), (40, 40, 200), (120, 120, 120))  # BGR


def draw(curves: dict[str, tuple[np.ndarray, np.ndarray]], tar_floor: float = 0.9, size: int = 560) -> np.ndarray:
    """{label: (genuine scores, impostor scores)} → BGR uint8 picture: step curves of TAR
    against log FAR from 1 / (impostor pairs) to 1."""
    import cv2

    img = np.full((size, size, 3), 255, np.uint8)
    margin, span = 72, size - 124
    lowest = min(len(imp) for _, imp in curves.values())
    decades = int(np.ceil(np.log10(lowest)))

    def xy(far, tar):
        x = margin + span * (np.log10(np.maximum(far, 10.0 ** -decades)) + decades) / decades
        y = margin + span * (1 - (np.clip(tar, tar_floor, 1) - tar_floor) / (1 - tar_floor))
        return np.stack([x, y], 1)

    for n, (label, (genuine, impostor)) in enumerate(curves.items()):
        colour = COLOURS[n % len(COLOURS)]
        far, tar = roc_points(genuine, impostor)
        step_far = np.repeat(far, 2)[1:]  # steps: the FAR moves, then the TAR rises
        step_tar = np.repeat(tar, 2)[:-1]
        cv2.polylines(img, [np.round(xy(step_far, step_tar)).astype(np.int32)], False, colour, 2, cv2.LINE_AA)
        y = margin + span - 12 - 18 * (len(curves) - 1 - n)
        cv2.line(img, (margin + span - 250, y - 4), (margin + span - 230, y - 4), colour, 2, cv2.LINE_AA)
        cv2.putText(img, label, (margin + span - 224, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (margin, margin), (margin + span, margin + span), (0, 0, 0), 1)
    for exponent in range(-decades, 1):
        x = int(margin + span * (exponent + decades) / decades)
        cv2.putText(img, f"1e{exponent}", (x - 14, margin + span + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    for tar in np.linspace(tar_floor, 1, 5):
        y = int(margin + span * (1 - (tar - tar_floor) / (1 - tar_floor)))
        cv2.putText(img, f"{tar:.3f}", (margin - 44, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, "ROC (every threshold)", (margin, margin - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(img, "false accept rate (impostor pairs let in), log scale", (margin, size - 12),
                cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    axis = np.full((18, span, 3), 255, np.uint8)
    cv2.putText(axis, f"true accept rate ({tar_floor:g} to 1)", (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                cv2.LINE_AA)
    img[margin:margin + span, 4:22] = cv2.rotate(axis, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return img
