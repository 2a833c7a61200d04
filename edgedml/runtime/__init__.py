"""The on-device runtime: numpy + OpenCV (+ an inference backend). Never imports torch."""
