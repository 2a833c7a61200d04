"""The bundles that install with edgedml, one folder per shipped preset (``objects``, ``faces``),
written by ``scripts/ship_bundles.py`` and found by :mod:`edgedml.runtime.shipped`. Data only."""
