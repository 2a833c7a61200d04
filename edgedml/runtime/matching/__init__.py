"""Matching: the :class:`~.matcher.Matcher` and what it returns.

Embedding and comparing images with a bundle (:mod:`.matcher`; the embedder's rows are
:class:`~.features.Features`), the results (:mod:`.results`: :class:`~.results.MatchResult`;
:mod:`.face_result`: one detected face, cut and embedded), the numpy mirror of the structural
flow (:mod:`.structural`), and explanations: region maps in frame pixels (:mod:`.explain`), the
side-by-side picture a guard reads (:mod:`.explanation`, laid out with :mod:`.picture_text`).
Uses :mod:`..inference`, :mod:`..faces` and :mod:`..assurance.thresholds`
(and :mod:`..assurance.faithfulness` when ``Matcher.faithfulness`` is called).
"""
