"""keras_attn: attention and Transformers for Keras 3 on TensorFlow, JAX and PyTorch."""

from keras_attn import convert
from keras_attn import data
from keras_attn import distribution
from keras_attn import export
from keras_attn import generation
from keras_attn import inspect
from keras_attn import layers
from keras_attn import models
from keras_attn import ops
from keras_attn import training
from keras_attn._version import __version__

__all__ = [
    "convert",
    "data",
    "distribution",
    "export",
    "generation",
    "inspect",
    "layers",
    "models",
    "ops",
    "training",
    "__version__",
]
