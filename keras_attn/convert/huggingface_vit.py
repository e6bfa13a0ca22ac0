"""Hugging Face `ViTModel` / `ViTForImageClassification` → `VisionTransformer`."""

import re

from keras_attn.convert import _checkpoint
from keras_attn.convert._checkpoint import Entry
from keras_attn.convert._checkpoint import heads_bias
from keras_attn.convert._checkpoint import heads_kernel
from keras_attn.convert._checkpoint import output_kernel
from keras_attn.convert._checkpoint import torch_dense
from keras_attn.convert._checkpoint import torch_norm

_OWNER = "vit_from_huggingface"
# transformers < 5 names → the names of transformers 5 (`q_proj`, `mlp.fc1`, ...).
_LEGACY_NAMES = (
    (r"\.encoder\.layer\.(\d+)\.", r".layers.\1."),
    (r"^encoder\.layer\.(\d+)\.", r"layers.\1."),
    (r"attention\.attention\.query\.", "attention.q_proj."),
    (r"attention\.attention\.key\.", "attention.k_proj."),
    (r"attention\.attention\.value\.", "attention.v_proj."),
    (r"attention\.output\.dense\.", "attention.o_proj."),
    (r"intermediate\.dense\.", "mlp.fc1."),
    (r"(layers\.\d+)\.output\.dense\.", r"\1.mlp.fc2."),
)
# Used for masked-image modelling only, never at inference.
_IGNORED = ("embeddings.mask_token",)
_POOLER = ("pooler.dense.weight", "pooler.dense.bias")
_REQUIRED = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "image_size",
    "patch_size",
)


def canonical_names(state):
    """`state` with transformers 4 names rewritten to transformers 5 names and
    the `vit.` prefix of `ViTForImageClassification` removed."""
    renamed = {}
    for name, value in state.items():
        for pattern, replacement in _LEGACY_NAMES:
            name = re.sub(pattern, replacement, name)
        renamed[name.removeprefix("vit.")] = value
    return renamed


def model_arguments(config, state, image_size=None):
    """`VisionTransformer` arguments for a Hugging Face ViT `config` dict.

    The head is kept when the checkpoint has a `classifier`, the pooler (a
    `tanh` dense layer on the class token) becomes `pre_logits`.
    """
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise ValueError(
            f"{_OWNER}: argument `config` must have the ViT keys {list(_REQUIRED)}; "
            f"missing {missing}."
        )
    activation = config.get("hidden_act", "gelu")
    if activation != "gelu":
        raise ValueError(
            f"{_OWNER}: config `hidden_act` must be 'gelu' (exact, erf), the "
            f"activation of keras_attn's ViT; received {activation!r}."
        )
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    if head_dim * heads != hidden:
        raise ValueError(
            f"{_OWNER}: config `head_dim` * `num_attention_heads` must equal "
            f"`hidden_size` ({hidden}); received {head_dim} * {heads}."
        )
    classifier = "classifier.weight" in state
    # With a classifier the pooler is unused, as in ViTForImageClassification.
    pooler = "pooler.dense.weight" in state and not classifier
    if pooler and config.get("pooler_act", "tanh") != "tanh":
        raise ValueError(
            f"{_OWNER}: config `pooler_act` must be 'tanh'; received "
            f"{config['pooler_act']!r}."
        )
    return {
        "image_size": image_size or _square(config, "image_size"),
        "patch_size": _square(config, "patch_size"),
        "num_layers": config["num_hidden_layers"],
        "num_heads": heads,
        "hidden_dim": hidden,
        "mlp_dim": config["intermediate_size"],
        "num_classes": _num_labels(config) if classifier else None,
        "channels": config.get("num_channels", 3),
        "dropout": config.get("hidden_dropout_prob", 0.0),
        "attention_dropout": config.get("attention_probs_dropout_prob", 0.0),
        "layer_norm_epsilon": config.get("layer_norm_eps", 1e-12),
        "representation_size": (
            config.get("pooler_output_size") or hidden if pooler else None
        ),
        "include_top": classifier,
    }


def _square(config, key):
    """HF configs allow `[height, width]`; `VisionTransformer` is square."""
    value = config.get(key)
    if isinstance(value, (list, tuple)) and len(set(value)) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"{_OWNER}: config `{key}` must be an int (square images and patches); "
            f"received {value!r}."
        )
    return value


def _num_labels(config):
    labels = config.get("id2label")
    return len(labels) if labels else config.get("num_labels", 2)


def _block_plan(i, arguments, qkv_bias):
    d, h, f = arguments["hidden_dim"], arguments["num_heads"], arguments["mlp_dim"]
    block, source = f"encoder_layer_{i}", f"layers.{i}"
    plan = []
    for name, proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
        target = f"{block}/self_attention/{name}"
        plan.append(
            Entry(
                f"{target}/kernel",
                f"{source}.attention.{proj}.weight",
                (d, d),
                heads_kernel(h),
            )
        )
        bias = f"{source}.attention.{proj}.bias" if qkv_bias else None
        plan.append(Entry(f"{target}/bias", bias, (d,), heads_bias(h)))
    output = f"{block}/self_attention/attention_output"
    plan += [
        Entry(
            f"{output}/kernel",
            f"{source}.attention.o_proj.weight",
            (d, d),
            output_kernel(h),
        ),
        Entry(f"{output}/bias", f"{source}.attention.o_proj.bias", (d,)),
    ]
    plan += torch_norm(
        f"{block}/self_attention_layer_norm", f"{source}.layernorm_before", d
    )
    plan += torch_norm(
        f"{block}/feedforward_layer_norm", f"{source}.layernorm_after", d
    )
    plan += torch_dense(
        f"{block}/feedforward_intermediate_dense", f"{source}.mlp.fc1", d, f
    )
    plan += torch_dense(f"{block}/feedforward_output_dense", f"{source}.mlp.fc2", f, d)
    return plan


def conversion_plan(arguments, build_grid, qkv_bias=True):
    """The `Entry` list from Hugging Face names to `VisionTransformer` variables.

    Args:
        arguments: `VisionTransformer` arguments (from `model_arguments`).
        build_grid: pair, the patch grid of the checkpoint's position table.
        qkv_bias: whether the checkpoint has query/key/value biases; without
            them the model's biases are set to zero.
    """
    d, p, c = arguments["hidden_dim"], arguments["patch_size"], arguments["channels"]
    rows = 1 + build_grid[0] * build_grid[1]
    plan = [
        Entry("patch_embedding/class_token", "embeddings.cls_token", (1, 1, d)),
        Entry(
            "patch_embedding/position_embedding",
            "embeddings.position_embeddings",
            (1, rows, d),
            lambda t: t[0],
        ),
        Entry(
            "patch_embedding/projection/kernel",
            "embeddings.patch_embeddings.projection.weight",
            (d, c, p, p),
            lambda w: w.transpose(2, 3, 1, 0),
        ),
        Entry(
            "patch_embedding/projection/bias",
            "embeddings.patch_embeddings.projection.bias",
            (d,),
        ),
    ]
    for i in range(arguments["num_layers"]):
        plan += _block_plan(i, arguments, qkv_bias)
    plan += torch_norm("encoder_norm", "layernorm", d)
    if arguments["representation_size"]:
        plan += torch_dense(
            "pre_logits", "pooler.dense", d, arguments["representation_size"]
        )
    if arguments["include_top"]:
        plan += torch_dense("head", "classifier", d, arguments["num_classes"])
    return plan


def vit_from_huggingface(checkpoint, config=None, image_size=None, dtype=None):
    """A `VisionTransformer` with the configuration and weights of a Hugging Face ViT.

    Reads `ViTModel` or `ViTForImageClassification` checkpoints written by
    transformers 4 or 5 (both naming schemes). The configuration follows the
    checkpoint: `layer_norm_eps`, dropout rates, `qkv_bias=False` (zero biases),
    the pooler (as `pre_logits`) and the classifier (as `head`, with
    `len(id2label)` classes). The model runs at any image size divisible by the
    patch size, like `interpolate_pos_encoding=True`, with the same bicubic
    kernel (a = -0.75).

    Args:
        checkpoint: a `.safetensors` file (its `config.json` beside it), a
            directory with `config.json` and `model.safetensors` (as written by
            `save_pretrained`; `pytorch_model.bin` is read with
            `torch.load(weights_only=True)`), or a state dict
            (`model.state_dict()`, torch tensors or NumPy arrays).
        config: the ViT configuration: a dict, a `transformers.ViTConfig` or the
            path of a `config.json`. Required with a state dict; defaults to the
            `config.json` next to the checkpoint.
        image_size: int. The image size the model is built for; the position
            table is resampled bicubically when it differs from the config's.
            Defaults to the config's `image_size`.
        dtype: dtype policy of the model. Defaults to the global policy.

    Returns:
        A `keras_attn.models.VisionTransformer` whose logits (or pooled
        features) equal the PyTorch model's in eval mode.

    Raises:
        ValueError: a tensor is missing, mis-shaped or unused (the message names
            it, the expected and the found shape), the file needs pickle, or the
            config asks for something `VisionTransformer` cannot do.

    Example:

    ```python
    model = vit_from_huggingface("vit-base-patch16-224/")  # a local directory
    logits = model(images)  # (batch, 224, 224, 3) channels-last, normalised
    ```
    """
    from keras_attn.models.vision_transformer import VisionTransformer

    state, config = _checkpoint.load_huggingface(
        checkpoint, config, _OWNER, "ViTConfig"
    )
    state = canonical_names(state)
    arguments = model_arguments(config, state, image_size)
    model = VisionTransformer(**arguments, dtype=dtype)  # validates image_size
    patch = arguments["patch_size"]
    grid = _square(config, "image_size") // patch
    new_grid = arguments["image_size"] // patch
    table = state.get("embeddings.position_embeddings")
    if new_grid != grid and table is not None and table.shape[1] == 1 + grid * grid:
        state["embeddings.position_embeddings"] = _checkpoint.resample_positions(
            table, grid, new_grid
        )
    plan = conversion_plan(
        arguments, (new_grid, new_grid), config.get("qkv_bias", True)
    )
    # ViTForImageClassification has no pooler and ignores one in its checkpoint.
    ignore = _IGNORED + (_POOLER if arguments["include_top"] else ())
    _checkpoint.apply_plan(model, state, plan, _OWNER, ignore=ignore)
    return model
