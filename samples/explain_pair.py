"""Explain why two images match: the score, its parts, the strongest region flows, a picture.

    python samples/explain_pair.py samples/images/daisy_1.jpg samples/images/daisy_2.jpg --model bundle --out why.png
"""

import argparse

import cv2

from edgedml.errors import EdgeDMLError
from edgedml.runtime import Matcher


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image_a")
    parser.add_argument("image_b")
    parser.add_argument("--model", required=True, help="bundle folder from `edgedml export`")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "int8-cpu"],
                        help="which of the bundle\'s graph sets to run")
    parser.add_argument("--out", default="why.png")
    parser.add_argument("--threshold", type=float)
    args = parser.parse_args(argv)
    try:
        with Matcher(args.model, precision=args.precision) as matcher:
            result = matcher.explain(args.image_a, args.image_b, threshold=args.threshold)  # the result and its picture
    except EdgeDMLError as exc:  # a broken bundle, an unreadable image, a threshold calibrated another way
        raise SystemExit(str(exc)) from None
    print(f"score {result.score:.4f} = structural {result.structural:.4f} + global {result.global_similarity:.4f}")
    for m in result.matches:
        print(f"  region {m.region_a} at {m.point_a} -> region {m.region_b} at {m.point_b}: flow {m.flow:.4f}")
    cv2.imwrite(args.out, result.render())
    print(f"picture: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
