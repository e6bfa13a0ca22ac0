"""Cached autoregressive decoding (greedy, beam, top-k, top-p) for our models."""

from keras_attn.generation.decoding import generate

__all__ = ["generate"]
