"""Layouts for `keras.distribution`: data and model parallelism for keras_attn."""

from keras_attn.distribution.layout import check_layout
from keras_attn.distribution.layout import layout_map
from keras_attn.distribution.layout import model_parallel

__all__ = ["check_layout", "layout_map", "model_parallel"]
