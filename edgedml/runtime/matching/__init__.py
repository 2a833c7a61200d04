"""Matching: the :class:`~.matcher.Matcher` and what it returns.

Embedding and comparing images with a bundle (:mod:`.matcher`; the embedder's rows are
:class:`~.features.Features`), with its face path (:mod:`.face_path`: the detector, the face chip,
every face of a frame), the comparison of two images (:mod:`.comparison`) and the graph's scores
checked before they decide (:mod:`.score_checks`); the results (:mod:`.results`:
:class:`~.results.MatchResult`; :mod:`.face_result`: one detected face, cut and embedded), the
numpy mirror of the structural flow (:mod:`.structural`), and explanations (:mod:`.explanation`):
region maps in frame pixels (:mod:`.explain`) and the side-by-side picture a guard reads, laid out
as boxes (:mod:`.picture_layout`, its labels kept apart by :mod:`.picture_text`) and drawn
(:mod:`.picture`). Uses :mod:`..inference`, :mod:`..faces` and :mod:`..assurance.thresholds`
(and :mod:`..assurance.faithfulness` when ``Matcher.faithfulness`` is called).
"""
