"""Look inside attention models: attention maps, rollout and ViT diagnostics.

`attention_maps` runs a model once and returns every attention layer's weights;
the other functions turn those maps (or the model's embeddings) into the
diagnostics of Abnar & Zuidema (2020) and of the ViT paper (Fig. 7), the
`plot_*` functions draw them as PNG files (matplotlib needed for those only), and
`explore` writes all of them into one interactive HTML page, and
`AttentionMapsCallback` logs them to TensorBoard while a model trains.
"""

from keras_attn.inspect.callback import AttentionMapsCallback
from keras_attn.inspect.distance import mean_attention_distance
from keras_attn.inspect.embeddings import patch_embedding_components
from keras_attn.inspect.embeddings import position_embedding_similarity
from keras_attn.inspect.explorer import ExplorerPage
from keras_attn.inspect.explorer import explore
from keras_attn.inspect.maps import attention_maps
from keras_attn.inspect.plots import plot_attention_distance
from keras_attn.inspect.plots import plot_attention_on_images
from keras_attn.inspect.plots import plot_patch_components
from keras_attn.inspect.plots import plot_position_similarity
from keras_attn.inspect.plots import plot_token_attention
from keras_attn.inspect.rollout import attention_rollout
from keras_attn.inspect.rollout import class_token_map

__all__ = [
    "AttentionMapsCallback",
    "ExplorerPage",
    "attention_maps",
    "attention_rollout",
    "class_token_map",
    "explore",
    "mean_attention_distance",
    "patch_embedding_components",
    "plot_attention_distance",
    "plot_attention_on_images",
    "plot_patch_components",
    "plot_position_similarity",
    "plot_token_attention",
    "position_embedding_similarity",
]
