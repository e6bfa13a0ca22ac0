"""Original ViT `.npz` checkpoints (Flax: vit_jax, big_vision) → `VisionTransformer`.

The Flax layout is Keras' own (kernels `(in, out)`, attention kernels
`(hidden, heads, head_dim)`), so no tensor is transposed; only names change.
"""

import math
import re

from keras_attn.convert import _checkpoint
from keras_attn.convert._checkpoint import Entry

_OWNER = "vit_from_npz"
_POSITIONS = "Transformer/posembed_input/pos_embedding"
_OPTIMIZER_TARGET = "opt/target/"
_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)/")
# The Flax LayerNorm epsilon of the original code.
_LAYER_NORM_EPSILON = 1e-6


def _norm(target, source, dim):
    return [
        Entry(f"{target}/gamma", f"{source}/scale", (dim,)),
        Entry(f"{target}/beta", f"{source}/bias", (dim,)),
    ]


def _dense(target, source, shape):
    return [
        Entry(f"{target}/kernel", f"{source}/kernel", shape),
        Entry(f"{target}/bias", f"{source}/bias", shape[-1:]),
    ]


def _block_plan(i, arguments):
    d, h, f = arguments["hidden_dim"], arguments["num_heads"], arguments["mlp_dim"]
    block, source = f"encoder_layer_{i}", f"Transformer/encoderblock_{i}"
    attention = f"{source}/MultiHeadDotProductAttention_1"
    plan = _norm(f"{block}/self_attention_layer_norm", f"{source}/LayerNorm_0", d)
    for name in ("query", "key", "value"):
        plan += [
            Entry(
                f"{block}/self_attention/{name}/kernel",
                f"{attention}/{name}/kernel",
                (d, h, d // h),
            ),
            Entry(
                f"{block}/self_attention/{name}/bias",
                f"{attention}/{name}/bias",
                (h, d // h),
            ),
        ]
    plan += [
        Entry(
            f"{block}/self_attention/attention_output/kernel",
            f"{attention}/out/kernel",
            (h, d // h, d),
        ),
        Entry(
            f"{block}/self_attention/attention_output/bias",
            f"{attention}/out/bias",
            (d,),
        ),
    ]
    plan += _norm(f"{block}/feedforward_layer_norm", f"{source}/LayerNorm_2", d)
    plan += _dense(
        f"{block}/feedforward_intermediate_dense",
        f"{source}/MlpBlock_3/Dense_0",
        (d, f),
    )
    plan += _dense(
        f"{block}/feedforward_output_dense", f"{source}/MlpBlock_3/Dense_1", (f, d)
    )
    return plan


def conversion_plan(arguments, rows):
    """The `Entry` list from Flax names to `VisionTransformer` variables.

    Args:
        arguments: `VisionTransformer` arguments (from `model_arguments`).
        rows: int, the rows of the position table in the checkpoint.
    """
    d, p, c = arguments["hidden_dim"], arguments["patch_size"], arguments["channels"]
    plan = [
        Entry(
            "patch_embedding/position_embedding",
            _POSITIONS,
            (1, rows, d),
            lambda t: t[0],
        ),
        *_dense("patch_embedding/projection", "embedding", (p, p, c, d)),
    ]
    if arguments["pooling"] == "token":
        plan.append(Entry("patch_embedding/class_token", "cls", (1, 1, d)))
    for i in range(arguments["num_layers"]):
        plan += _block_plan(i, arguments)
    plan += _norm("encoder_norm", "Transformer/encoder_norm", d)
    if arguments["representation_size"]:
        plan += _dense(
            "pre_logits", "pre_logits", (d, arguments["representation_size"])
        )
    if arguments["include_top"]:
        plan += _dense(
            "head",
            "head",
            (arguments["representation_size"] or d, arguments["num_classes"]),
        )
    return plan


def _shape(state, name):
    if name not in state:
        raise ValueError(
            f"{_OWNER}: the checkpoint has no tensor {name!r}, which every ViT "
            f"checkpoint in the original naming has; found {sorted(state)[:8]}..."
        )
    return state[name].shape


def model_arguments(state, image_size=None):
    """`VisionTransformer` arguments read from the tensor shapes of `state`."""
    patch, _, channels, hidden = _shape(state, "embedding/kernel")
    num_heads = _shape(
        state, "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"
    )[1]
    mlp_dim = _shape(state, "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel")[1]
    pooling = "token" if "cls" in state else "mean"
    grid = _grid(_shape(state, _POSITIONS)[1] - (pooling == "token"))
    include_top = "head/kernel" in state
    return {
        "image_size": image_size or grid * patch,
        "patch_size": patch,
        "num_layers": 1
        + max(int(_BLOCK.match(n)[1]) for n in state if _BLOCK.match(n)),
        "num_heads": num_heads,
        "hidden_dim": hidden,
        "mlp_dim": mlp_dim,
        "num_classes": state["head/kernel"].shape[1] if include_top else None,
        "channels": channels,
        "pooling": pooling,
        "layer_norm_epsilon": _LAYER_NORM_EPSILON,
        "representation_size": (
            state["pre_logits/kernel"].shape[1]
            if "pre_logits/kernel" in state
            else None
        ),
        "include_top": include_top,
    }


def _without_optimizer(state):
    """The `opt/target/` parameters of a checkpoint saved with its optimizer."""
    if f"{_OPTIMIZER_TARGET}embedding/kernel" not in state:
        return state
    return {
        name.removeprefix(_OPTIMIZER_TARGET): value
        for name, value in state.items()
        if name.startswith(_OPTIMIZER_TARGET)
    }


def _grid(patches):
    side = math.isqrt(patches)
    if side * side != patches:
        raise ValueError(
            f"{_OWNER}: tensor {_POSITIONS!r} must hold a square grid of patch "
            f"positions; found {patches} patch rows."
        )
    return side


def vit_from_npz(path, image_size=None, dtype=None):
    """A `VisionTransformer` from an original ViT `.npz` checkpoint.

    Reads the Flax naming of `google-research/vision_transformer` (`embedding`,
    `cls`, `Transformer/posembed_input/pos_embedding`,
    `Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/...`,
    `Transformer/encoder_norm`, `pre_logits`, `head`; also under the
    `opt/target/` prefix of checkpoints saved with their optimizer state) with
    `numpy.load(allow_pickle=False)`. The configuration is read from the tensor
    shapes; a checkpoint without `cls` pools by mean. With another `image_size`
    the position table is resampled bicubically with PyTorch's kernel, the one
    the model itself uses at other image sizes (`vit_jax` and timm resize these
    tables bilinearly, so their numbers at a new size differ slightly).

    Args:
        path: the `.npz` file, or a dict of its arrays.
        image_size: int. The image size the model is built for. Defaults to
            the checkpoint's (position grid × patch size).
        dtype: dtype policy of the model. Defaults to the global policy.

    Returns:
        A `keras_attn.models.VisionTransformer` with the checkpoint's weights.

    Raises:
        ValueError: a tensor is missing, mis-shaped or unused (named with the
            expected and found shapes), or the file needs pickle.

    Example:

    ```python
    model = vit_from_npz("ViT-B_16.npz", image_size=384)
    ```
    """
    from keras_attn.models.vision_transformer import VisionTransformer

    if isinstance(path, dict):
        state = _checkpoint.state_dict_to_numpy(path)
    else:
        state = _checkpoint.read_state_dict(path)
    state = _without_optimizer(state)
    arguments = model_arguments(state, image_size)
    prefix = int(arguments["pooling"] == "token")
    rows = _shape(state, _POSITIONS)[1]
    grid = _grid(rows - prefix)
    new_grid = arguments["image_size"] // arguments["patch_size"]
    if new_grid != grid:
        state[_POSITIONS] = _checkpoint.resample_positions(
            state[_POSITIONS], grid, new_grid, num_prefix_tokens=prefix
        )
        rows = prefix + new_grid * new_grid
    model = VisionTransformer(**arguments, dtype=dtype)
    plan = conversion_plan(arguments, rows)
    _checkpoint.apply_plan(model, state, plan, _OWNER)
    return model
