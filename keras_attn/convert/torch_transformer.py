"""`torch.nn.Transformer` (with its token embeddings) → keras_attn `Transformer`.

`torch.nn.Transformer` takes embedded sequences; the keras_attn model embeds
tokens itself (× √d, plus the interleaved sinusoids of "Attention Is All You
Need", as in the PyTorch tutorial's `PositionalEncoding`), so the embeddings and
the output projection are given separately. A post-LN `nn.Transformer` ends each
stack with a norm (`encoder.norm`, `decoder.norm`): the model gets
`final_norm=True`.
"""

import re

import numpy as np

from keras_attn import _checks
from keras_attn.convert import _checkpoint
from keras_attn.convert._checkpoint import Entry
from keras_attn.convert._checkpoint import fused_qkv_entries
from keras_attn.convert._checkpoint import output_kernel
from keras_attn.convert._checkpoint import torch_dense
from keras_attn.convert._checkpoint import torch_norm

_OWNER = "transformer_from_torch"
# `activation_relu_or_gelu` of torch's layers: 1 is F.relu, 2 is F.gelu (exact).
_ACTIVATIONS = {1: "relu", 2: "gelu"}
_EMBEDDING = "embedding.weight"
_TARGET_EMBEDDING = "target_embedding.weight"
_OUTPUT = "output_projection.weight"


def _attention(target, source, dim, heads):
    plan = fused_qkv_entries(
        target, f"{source}.in_proj_weight", f"{source}.in_proj_bias", dim, heads
    )
    return plan + [
        Entry(
            f"{target}/attention_output/kernel",
            f"{source}.out_proj.weight",
            (dim, dim),
            output_kernel(heads),
        ),
        Entry(f"{target}/attention_output/bias", f"{source}.out_proj.bias", (dim,)),
    ]


def _feedforward(target, source, dim, intermediate):
    return [
        *torch_dense(
            f"{target}/feedforward_intermediate_dense",
            f"{source}.linear1",
            dim,
            intermediate,
        ),
        *torch_dense(
            f"{target}/feedforward_output_dense", f"{source}.linear2", intermediate, dim
        ),
    ]


def _encoder_plan(i, d, h, f):
    target, source = f"encoder_layer_{i}", f"encoder.layers.{i}"
    return [
        *_attention(f"{target}/self_attention", f"{source}.self_attn", d, h),
        *torch_norm(f"{target}/self_attention_layer_norm", f"{source}.norm1", d),
        *torch_norm(f"{target}/feedforward_layer_norm", f"{source}.norm2", d),
        *_feedforward(target, source, d, f),
    ]


def _decoder_plan(i, d, h, f):
    target, source = f"decoder_layer_{i}", f"decoder.layers.{i}"
    return [
        *_attention(f"{target}/self_attention", f"{source}.self_attn", d, h),
        *torch_norm(f"{target}/self_attention_layer_norm", f"{source}.norm1", d),
        *_attention(f"{target}/cross_attention", f"{source}.multihead_attn", d, h),
        *torch_norm(f"{target}/cross_attention_layer_norm", f"{source}.norm2", d),
        *torch_norm(f"{target}/feedforward_layer_norm", f"{source}.norm3", d),
        *_feedforward(target, source, d, f),
    ]


def conversion_plan(arguments):
    """The `Entry` list from `nn.Transformer` names (and the embeddings, named
    `embedding.weight`, `target_embedding.weight`, `output_projection.weight`)
    to keras_attn `Transformer` variables."""
    d, h = arguments["hidden_dim"], arguments["num_heads"]
    f = arguments["intermediate_dim"]
    vocabulary = arguments["vocabulary_size"]
    target_vocabulary = arguments["target_vocabulary_size"]
    shared = arguments["share_embeddings"]
    plan = [
        Entry(
            "decoder_token_embedding/embeddings",
            _EMBEDDING if shared else _TARGET_EMBEDDING,
            (target_vocabulary, d),
        )
    ]
    if not shared:
        plan.append(
            Entry("encoder_token_embedding/embeddings", _EMBEDDING, (vocabulary, d))
        )
    if not arguments["tie_output_embeddings"]:
        plan.append(
            Entry(
                "decoder_token_embedding/reverse_embeddings",
                _OUTPUT,
                (target_vocabulary, d),
                _checkpoint.dense_kernel,
            )
        )
    for i in range(arguments["num_layers"]):
        plan += _encoder_plan(i, d, h, f)
    for i in range(arguments["num_decoder_layers"]):
        plan += _decoder_plan(i, d, h, f)
    if arguments["final_norm"] or arguments["normalize_first"]:
        plan += torch_norm("encoder_norm", "encoder.norm", d)
        plan += torch_norm("decoder_norm", "decoder.norm", d)
    return plan


def _array(value, argument):
    """A tensor, array or module with a `weight` as a NumPy array."""
    value = getattr(value, "weight", value)
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    value = np.asarray(value)
    if value.ndim != 2:
        raise ValueError(
            f"{_OWNER}: argument `{argument}` must be a `(vocabulary, hidden)` "
            f"weight, an `nn.Embedding` or an `nn.Linear`; found shape "
            f"{value.shape}."
        )
    return value


def _module_options(module):
    """Options a state dict does not hold, read from an `nn.Transformer`."""
    layer = module.encoder.layers[0]
    activation = _ACTIVATIONS.get(layer.activation_relu_or_gelu)
    if activation is None:
        raise ValueError(
            f"{_OWNER}: the layers' activation must be 'relu' or 'gelu'; "
            f"received {layer.activation!r}."
        )
    return {
        "num_heads": layer.self_attn.num_heads,
        "normalize_first": layer.norm_first,
        "activation": activation,
        "layer_norm_epsilon": layer.norm1.eps,
        "dropout": layer.dropout.p,
    }


def _count(state, prefix):
    pattern = re.compile(rf"^{prefix}\.layers\.(\d+)\.")
    indices = [int(m[1]) for m in map(pattern.match, state) if m]
    if not indices:
        raise ValueError(
            f"{_OWNER}: the state dict has no tensor '{prefix}.layers.0.*': it is "
            f"not a `torch.nn.Transformer` state dict."
        )
    return 1 + max(indices)


def model_arguments(state, options):
    """keras_attn `Transformer` arguments from the state dict and the options."""
    weight = "encoder.layers.0.self_attn.in_proj_weight"
    if weight not in state:
        raise ValueError(f"{_OWNER}: the state dict has no tensor {weight!r}.")
    hidden = state[weight].shape[1]
    vocabulary = state[_EMBEDDING].shape[0]
    target = state.get(_TARGET_EMBEDDING, state[_EMBEDDING])
    return {
        "vocabulary_size": vocabulary,
        "target_vocabulary_size": target.shape[0],
        "num_layers": _count(state, "encoder"),
        "num_decoder_layers": _count(state, "decoder"),
        "hidden_dim": hidden,
        "intermediate_dim": state["encoder.layers.0.linear1.weight"].shape[0],
        "share_embeddings": _TARGET_EMBEDDING not in state,
        "tie_output_embeddings": _OUTPUT not in state,
        "final_norm": "encoder.norm.weight" in state,
        **options,
    }


def transformer_from_torch(
    transformer,
    embedding,
    target_embedding=None,
    output_projection=None,
    num_heads=None,
    normalize_first=None,
    activation="relu",
    layer_norm_epsilon=1e-5,
    padding_id=0,
    scale_embeddings=True,
    dtype=None,
):
    """A keras_attn `Transformer` with the weights of a `torch.nn.Transformer`.

    The keras_attn model embeds tokens as `embedding(ids) * sqrt(d)` plus
    interleaved sinusoidal positions (`PE[pos, 2i] = sin`, `PE[pos, 2i+1] =
    cos`, the PyTorch tutorial's `PositionalEncoding`), masks `padding_id`
    tokens as `src_key_padding_mask`, `tgt_key_padding_mask` and
    `memory_key_padding_mask` do, applies the causal `tgt_mask`, and projects
    with the transposed target embedding unless `output_projection` is given.
    Its logits then equal those of the PyTorch pipeline built the same way.

    Args:
        transformer: a `torch.nn.Transformer` (any `batch_first`), or its
            `state_dict()`.
        embedding: the source token embedding (shared with the target unless
            `target_embedding` is given): an `nn.Embedding`, or its
            `(vocabulary, hidden)` weight as a tensor or array.
        target_embedding: the target token embedding, if not shared.
        output_projection: an `nn.Linear(hidden, vocabulary, bias=False)` or
            its weight; `None` ties the projection to the target embedding.
        num_heads: int. Read from the module; required with a state dict.
        normalize_first: bool, `norm_first` of the layers. Read from the
            module; required with a state dict.
        activation: `"relu"` or `"gelu"`, used with a state dict (read from
            the module otherwise).
        layer_norm_epsilon: float, used with a state dict (read from the
            module otherwise).
        padding_id: int, the token id masked as padding.
        scale_embeddings: bool. Multiply the embeddings by √d.
        dtype: dtype policy of the model. Defaults to the global policy.

    Returns:
        A `keras_attn.models.Transformer` (`final_norm=True` when the stacks
        end with a norm, as every `nn.Transformer`'s do).

    Raises:
        ValueError: a tensor is missing, mis-shaped or unused (named with the
            expected and found shapes), an option is missing for a state dict,
            or `output_projection` has a bias.

    Example:

    ```python
    torch_model = torch.nn.Transformer(d_model=512, nhead=8, batch_first=True)
    model = transformer_from_torch(torch_model, embedding=token_embedding)
    logits = model({"encoder_token_ids": source, "decoder_token_ids": target})
    ```
    """
    from keras_attn.models.transformer import Transformer

    if hasattr(transformer, "state_dict"):
        options = _module_options(transformer)
        transformer = transformer.state_dict()
    else:
        for argument, value in (
            ("num_heads", num_heads),
            ("normalize_first", normalize_first),
        ):
            if value is None:
                _checks.fail(_OWNER, argument, value, "given with a state dict")
        options = {
            "num_heads": num_heads,
            "normalize_first": bool(normalize_first),
            "activation": activation,
            "layer_norm_epsilon": layer_norm_epsilon,
            "dropout": 0.0,
        }
    state = _checkpoint.state_dict_to_numpy(transformer)
    state[_EMBEDDING] = _array(embedding, "embedding")
    if target_embedding is not None:
        state[_TARGET_EMBEDDING] = _array(target_embedding, "target_embedding")
    if output_projection is not None:
        _check_no_bias(output_projection)
        state[_OUTPUT] = _array(output_projection, "output_projection")
    arguments = model_arguments(state, options)
    model = Transformer(
        **arguments,
        padding_id=padding_id,
        scale_embeddings=scale_embeddings,
        dtype=dtype,
    )
    _checkpoint.apply_plan(model, state, conversion_plan(arguments), _OWNER)
    return model


def _check_no_bias(projection):
    bias = getattr(projection, "bias", None)
    if bias is not None and bool((bias != 0).any()):
        raise ValueError(
            f"{_OWNER}: argument `output_projection` must have no bias (the "
            f"keras_attn projection is the embedding transposed); received an "
            f"`nn.Linear` with a non-zero bias of shape {tuple(bias.shape)}."
        )
