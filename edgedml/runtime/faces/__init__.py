"""Faces: what part of a frame the embedder sees when the bundle is a face model.

Detection with YuNet (:mod:`.detection`), the view of a face, square and eye-levelled or dlib's
150×150 chip, with the exact map back to the frame (:mod:`.roi`, :mod:`.dlib_chip`), and a
class-per-folder photo set turned into the detector's face crops for training (:mod:`.face_crops`).
Uses :mod:`..inference` only.
"""
