"""Assurance: how far a decision and an explanation can be trusted.

Decision thresholds and which of them may decide access (:mod:`.thresholds`), ``edgedml
calibrate`` (:mod:`.calibration`: thresholds at target false-accept rates from a labelled set,
:mod:`.labelled_set`), the error rates it measures (:mod:`.error_rates`: FAR, TAR, EER, ROC
points; numpy only) and the pictures of its score distributions (:mod:`.calibration_picture`),
and how faithful an evidence map is (:mod:`.faithfulness`: deletion and insertion curves). Uses
:mod:`..inference`, :mod:`..faces` and :mod:`..matching`; :mod:`.thresholds` uses nothing in the
runtime, so the matcher and the gallery decide with it.
"""
