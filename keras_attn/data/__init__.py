"""Packing variable-length token sequences into fixed-length training rows."""

from keras_attn.data.batches import PackedBatches
from keras_attn.data.packing import pack_sequences

__all__ = ["PackedBatches", "pack_sequences"]
