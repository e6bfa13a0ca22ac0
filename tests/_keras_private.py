"""The private Keras API the tests use, in one place (see keras_attn/_keras_private.py).

`TestCase` is Keras' layer test harness (`run_layer_test`), which keras-hub's tests use
too; `named_product` builds parametrised test names; `global_state` resets Keras'
process-wide state between tests that change it.
"""

from keras.src.backend.common import global_state
from keras.src.testing import TestCase
from keras.src.testing.test_utils import named_product

from keras_attn._keras_private import get_keras_mask
from keras_attn._keras_private import set_keras_mask

__all__ = [
    "TestCase",
    "get_keras_mask",
    "global_state",
    "named_product",
    "set_keras_mask",
]
