"""Benchmarks of keras_attn against the Keras, keras-hub and PyTorch anchors.

Run `python -m benchmarks --help`. Each case runs in a child process per backend
(`KERAS_BACKEND` is fixed at import time); contenders of a case run interleaved in
one process so that a noisy, shared machine affects them alike, and results are
reported as medians with min/max over rounds, and as ratios.
"""
