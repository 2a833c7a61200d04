"""YuNet's five landmarks in dlib's 150×150 face chip (padding 0.25): the template
:func:`edgedml.runtime.faces.roi.dlib_chip_view` warps a face onto, so that dlib's face descriptor sees
the crop it was trained on with no dlib at run time.

GENERATED; do not edit. Produced by

    python scripts/derive_dlib_chip_points.py --people train

on 284 photos of 28 people (orl_faces s01–s20, yalefaces subject01–subject08) where dlib's HOG detector +
5-point predictor and YuNet each found one face: per point, the median of YuNet's landmark mapped
into the chip by dlib's own chip transform (``get_face_chip_details``). Pixel coordinates, (x, y),
pixel centres at integers (as cv2.warpAffine). Spread around the median (chip pixels): median
distance 3.11, 3.18, 3.47, 4.57, 4.41; 90th percentile 5.19, 5.64, 6.26, 8.71, 8.44.
"""

import numpy as np

DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25

# (5, 2) in YuNet's order (the person's right eye first: the image's left).
YUNET_POINTS_IN_DLIB_CHIP = np.array([
    (45.46, 46.68),  # right eye
    (100.69, 46.32),  # left eye
    (72.65, 77.27),  # nose tip
    (50.57, 100.40),  # right mouth corner
    (98.51, 100.14),  # left mouth corner
])

# (5,) median distance (chip pixels) of a photo's point to the template's.
YUNET_POINTS_SPREAD = np.array([3.11, 3.18, 3.47, 4.57, 4.41])
