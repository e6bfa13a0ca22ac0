"""Process settings the examples make before Keras imports its backend.

- TensorFlow's C++ start-up messages are silenced (`TF_CPP_MIN_LOG_LEVEL=2`).
- OpenMP threads wait passively (`OMP_WAIT_POLICY=PASSIVE`). PyTorch's threads
  otherwise spin between ops; on cores shared with other busy processes that
  stalled every op (measured: a torch training step of the digits ViT took 1.6 s
  instead of 0.7 s next to three other jobs on two cores).

Both are defaults: a value already in the environment wins.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
