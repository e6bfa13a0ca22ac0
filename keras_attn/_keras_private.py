"""The private Keras API this package relies on, in one place.

Keras exports no public way to read or attach the mask that rides on a tensor (the
one `Embedding(mask_zero=True)` creates and every `supports_masking` layer passes
on), so layers that take it from their inputs, or losses that attach one, use
Keras' own functions. They are imported here and nowhere else, so that when Keras
moves them one import changes, and `tests/test_keras_private.py` says which.
"""

from keras.src.backend import get_keras_mask
from keras.src.backend import set_keras_mask

__all__ = ["get_keras_mask", "set_keras_mask"]
