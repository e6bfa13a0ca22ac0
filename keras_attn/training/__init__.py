"""Training recipes of "Attention Is All You Need": schedule, loss and metrics."""

from keras_attn.training.losses import MaskedSparseCategoricalCrossentropy
from keras_attn.training.metrics import MaskedAccuracy
from keras_attn.training.metrics import SequenceExactMatch
from keras_attn.training.schedules import TransformerSchedule

__all__ = [
    "MaskedAccuracy",
    "MaskedSparseCategoricalCrossentropy",
    "SequenceExactMatch",
    "TransformerSchedule",
]
