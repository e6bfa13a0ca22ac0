"""A keras_attn ViT's weights under the names of the original ViT `.npz` files."""

import keras
import numpy as np

from keras_attn.models import VisionTransformer


def random_vit(image_size=16, **overrides):
    config = dict(
        image_size=image_size,
        patch_size=4,
        num_layers=2,
        num_heads=4,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=5,
    )
    config.update(overrides)
    model = VisionTransformer(**config)
    rng = np.random.RandomState(0)
    for variable in model.weights:  # the head is zero-initialised: randomise all
        variable.assign(rng.normal(0, 0.2, variable.shape).astype("float32"))
    return model


def original_naming(model):
    """The model's weights under the names of the original ViT `.npz` files."""
    weights = {v.path: keras.ops.convert_to_numpy(v.value) for v in model.weights}
    state = {
        "embedding/kernel": weights["patch_embedding/projection/kernel"],
        "embedding/bias": weights["patch_embedding/projection/bias"],
        "Transformer/posembed_input/pos_embedding": weights[
            "patch_embedding/position_embedding"
        ][None],
        "Transformer/encoder_norm/scale": weights["encoder_norm/gamma"],
        "Transformer/encoder_norm/bias": weights["encoder_norm/beta"],
    }
    if "patch_embedding/class_token" in weights:
        state["cls"] = weights["patch_embedding/class_token"]
    for name in ("pre_logits", "head"):
        if f"{name}/kernel" in weights:
            state[f"{name}/kernel"] = weights[f"{name}/kernel"]
            state[f"{name}/bias"] = weights[f"{name}/bias"]
    for i in range(model.num_layers):
        ours, theirs = f"encoder_layer_{i}", f"Transformer/encoderblock_{i}"
        pairs = {
            "LayerNorm_0/scale": "self_attention_layer_norm/gamma",
            "LayerNorm_0/bias": "self_attention_layer_norm/beta",
            "LayerNorm_2/scale": "feedforward_layer_norm/gamma",
            "LayerNorm_2/bias": "feedforward_layer_norm/beta",
            "MlpBlock_3/Dense_0/kernel": "feedforward_intermediate_dense/kernel",
            "MlpBlock_3/Dense_0/bias": "feedforward_intermediate_dense/bias",
            "MlpBlock_3/Dense_1/kernel": "feedforward_output_dense/kernel",
            "MlpBlock_3/Dense_1/bias": "feedforward_output_dense/bias",
        }
        for flax, keras_name in (
            ("query", "query"),
            ("key", "key"),
            ("value", "value"),
            ("out", "attention_output"),
        ):
            for kind in ("kernel", "bias"):
                pairs[f"MultiHeadDotProductAttention_1/{flax}/{kind}"] = (
                    f"self_attention/{keras_name}/{kind}"
                )
        for flax, keras_name in pairs.items():
            state[f"{theirs}/{flax}"] = weights[f"{ours}/{keras_name}"]
    return state
