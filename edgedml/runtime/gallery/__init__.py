"""Galleries: enrolled identities and the access decisions made against them.

The decisions, 1:1 verify and 1:N identify (:mod:`.gallery`), the logged rows
(:mod:`.decision_log`), what every store provides (:mod:`.store`), the embedded SQLite store and
the fleet's PostgreSQL store (:mod:`.sqlite_store`, :mod:`.postgres_store`, :mod:`.url`), the gallery
file as SQLite sees it (:mod:`.sqlite_file`) and its tables (:mod:`.sqlite_schema`), the first stage
of 1:N search (:mod:`.template_index`, and :mod:`.sqlite_index` keeping it equal to a file),
identity names (:mod:`.names`) and consistent backups (:mod:`.backup`). Uses :mod:`..inference`,
:mod:`..faces`, :mod:`..matching` and :mod:`..assurance.thresholds`.
"""
