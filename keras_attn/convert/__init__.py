"""Weight import from other libraries' checkpoints.

`vit_from_huggingface` reads Hugging Face ViT checkpoints,
`causal_lm_from_huggingface` Hugging Face GPT-2 checkpoints, `vit_from_npz` the
original (Flax) ViT `.npz` files and `transformer_from_torch` a
`torch.nn.Transformer`. Each checks every tensor's name and shape before it
writes a weight, and none unpickles: safetensors, `numpy.load(allow_pickle=False)`
and `torch.load(weights_only=True)` only. torch, safetensors and transformers are
imported only when a converter runs (`pip install keras-attn[convert]`).
"""

from keras_attn.convert._checkpoint import read_state_dict
from keras_attn.convert.huggingface_gpt2 import causal_lm_from_huggingface
from keras_attn.convert.huggingface_vit import vit_from_huggingface
from keras_attn.convert.original_vit import vit_from_npz
from keras_attn.convert.torch_transformer import transformer_from_torch

__all__ = [
    "causal_lm_from_huggingface",
    "read_state_dict",
    "transformer_from_torch",
    "vit_from_huggingface",
    "vit_from_npz",
]
