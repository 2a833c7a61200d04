"""Inference: from an image to the graph's outputs, on whatever the device offers.

Decoding (:mod:`.image`, with :mod:`.image_header` refusing oversized images before they are
decoded), the pixels training saw (:mod:`.preprocess`), the bundle's graphs and their shape limits
(:mod:`.graphs`, :mod:`.chunking`: larger requests are split to fit), how closely a graph must agree
with its reference (:mod:`.agreement`), and the backends behind one interface (:mod:`.backends`:
ONNX Runtime and the choice among backends; :mod:`.opencv_backend`; :mod:`.tensorrt`, which also
builds and checks engines on the device). Nothing here knows what a match, a face or a gallery is.
"""
