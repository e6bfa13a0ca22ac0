"""Hugging Face `GPT2LMHeadModel` / `GPT2Model` → `CausalLM`.

GPT-2 writes its projections as `Conv1D`, whose weights are `(in, out)` like a
Keras kernel, and fuses query, key and value into one `c_attn` of width `3d`:
the plan slices it into the three `EinsumDense` kernels, head by head.
"""

import numpy as np

from keras_attn.convert import _checkpoint
from keras_attn.convert._checkpoint import Entry
from keras_attn.convert._checkpoint import fused_qkv_entries
from keras_attn.convert._checkpoint import torch_norm

_OWNER = "causal_lm_from_huggingface"
_HEAD = "lm_head.weight"
_REQUIRED = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
# Hugging Face activation names → keras_attn's (None: `gelu_approximate`).
_ACTIVATIONS = {
    "gelu_new": None,
    "gelu_pytorch_tanh": None,
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
# Config values `CausalLM` cannot reproduce, with the value it needs. Not here:
# `reorder_and_upcast_attn`, float32 scores and softmax, as our core always does.
_FIXED = {
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
}


def canonical_names(state):
    """`state` without the `transformer.` prefix of `GPT2LMHeadModel`, so that
    `GPT2Model` checkpoints (OpenAI's `gpt2` on the Hub) read the same."""
    return {name.removeprefix("transformer."): value for name, value in state.items()}


def model_arguments(config):
    """`CausalLM` arguments for a Hugging Face GPT-2 `config` dict.

    Fails with a `ValueError` naming the config key and its value where the
    configuration asks for something `CausalLM` does not do.
    """
    from keras_attn.models.causal_lm_presets import gelu_approximate

    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise ValueError(
            f"{_OWNER}: argument `config` must have the GPT-2 keys "
            f"{list(_REQUIRED)}; missing {missing}."
        )
    for key, supported in _FIXED.items():
        if config.get(key, supported) != supported:
            raise ValueError(
                f"{_OWNER}: config `{key}` must be {supported} (what CausalLM "
                f"computes); received {config[key]!r}."
            )
    activation = config.get("activation_function", "gelu_new")
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"{_OWNER}: config `activation_function` must be one of "
            f"{sorted(_ACTIVATIONS)}; received {activation!r}."
        )
    hidden = config["n_embd"]
    return {
        "vocabulary_size": config["vocab_size"],
        "num_layers": config["n_layer"],
        "hidden_dim": hidden,
        "intermediate_dim": config.get("n_inner") or 4 * hidden,
        "num_heads": config["n_head"],
        "max_sequence_length": config["n_positions"],
        "position_embedding": "learned",
        "normalize_first": True,
        "tie_output_embeddings": config.get("tie_word_embeddings", True),
        "activation": _ACTIVATIONS[activation] or gelu_approximate,
        # One rate for CausalLM's three dropouts; they matter in training only.
        "dropout": config.get("resid_pdrop", 0.1),
        "layer_norm_epsilon": config.get("layer_norm_epsilon", 1e-5),
        # HF's forward masks nothing unless given an `attention_mask`.
        "padding_id": None,
    }


def _conv1d(target, source, units_in, units_out):
    """Entries of a Keras `Dense` from a GPT-2 `Conv1D` (weight `(in, out)`)."""
    return [
        Entry(f"{target}/kernel", f"{source}.weight", (units_in, units_out)),
        Entry(f"{target}/bias", f"{source}.bias", (units_out,)),
    ]


def _block_plan(i, arguments):
    d, h, f = (arguments[k] for k in ("hidden_dim", "num_heads", "intermediate_dim"))
    block, source = f"decoder_layer_{i}", f"h.{i}"
    attention = f"{block}/self_attention"
    fused = f"{source}.attn.c_attn"
    plan = fused_qkv_entries(
        attention, f"{fused}.weight", f"{fused}.bias", d, h, conv1d=True
    )
    plan += [
        Entry(
            f"{attention}/attention_output/kernel",
            f"{source}.attn.c_proj.weight",
            (d, d),
            lambda w: w.reshape(h, -1, w.shape[1]),  # rows are the heads' features
        ),
        Entry(f"{attention}/attention_output/bias", f"{source}.attn.c_proj.bias", (d,)),
    ]
    plan += torch_norm(f"{block}/self_attention_layer_norm", f"{source}.ln_1", d)
    plan += torch_norm(f"{block}/feedforward_layer_norm", f"{source}.ln_2", d)
    plan += _conv1d(
        f"{block}/feedforward_intermediate_dense", f"{source}.mlp.c_fc", d, f
    )
    plan += _conv1d(f"{block}/feedforward_output_dense", f"{source}.mlp.c_proj", f, d)
    return plan


def conversion_plan(arguments):
    """The `Entry` list from GPT-2 names (without `transformer.`) to `CausalLM`
    variables, for `CausalLM` arguments from `model_arguments`."""
    v, d = arguments["vocabulary_size"], arguments["hidden_dim"]
    plan = [
        Entry("token_embedding/embeddings", "wte.weight", (v, d)),
        Entry(
            "position_embedding/embeddings",
            "wpe.weight",
            (arguments["max_sequence_length"], d),
        ),
    ]
    for i in range(arguments["num_layers"]):
        plan += _block_plan(i, arguments)
    plan += torch_norm("decoder_norm", "ln_f", d)
    if not arguments["tie_output_embeddings"]:
        plan.append(
            Entry("token_embedding/reverse_embeddings", _HEAD, (v, d), _transpose)
        )
    return plan


def _transpose(weight):
    return np.ascontiguousarray(weight.T)


def ignored_names(state, arguments):
    """Checkpoint names read by no variable: the causal-mask buffers of older
    checkpoints (`attn.bias`, `attn.masked_bias`) and a tied `lm_head.weight`,
    which must then equal `wte.weight`."""
    ignore = [
        f"h.{i}.attn.{buffer}"
        for i in range(arguments["num_layers"])
        for buffer in ("bias", "masked_bias")
    ]
    if arguments["tie_output_embeddings"] and _HEAD in state:
        head, embeddings = state[_HEAD], state.get("wte.weight")
        if embeddings is not None and not np.array_equal(head, embeddings):
            raise ValueError(
                f"{_OWNER}: tensor {_HEAD!r} must equal 'wte.weight' (config "
                f"`tie_word_embeddings` is True); found a different tensor of shape "
                f"{tuple(np.shape(head))}. Set `tie_word_embeddings: false` in the "
                f"config to read an untied head."
            )
        ignore.append(_HEAD)
    return ignore


def causal_lm_from_huggingface(checkpoint, config=None, dtype=None):
    """A `CausalLM` with the configuration and weights of a Hugging Face GPT-2.

    Reads `GPT2LMHeadModel` and `GPT2Model` checkpoints (with or without the
    `transformer.` prefix, with or without the causal-mask buffers of older
    files). The configuration follows the checkpoint: `n_embd`, `n_layer`,
    `n_head`, `n_inner` (default `4 * n_embd`), `n_positions`, `vocab_size`,
    `layer_norm_epsilon`, `activation_function` (`"gelu_new"`, GPT-2's, is
    `keras_attn.models.gelu_approximate`) and `tie_word_embeddings` (tied: the
    head is `wte`, and an `lm_head.weight` must equal it). `resid_pdrop` is the
    model's one dropout rate. `padding_id` is None, as GPT-2 has no padding
    token: pass a `padding_mask` where HF takes an `attention_mask`.

    Args:
        checkpoint: a `.safetensors` or torch file (its `config.json` beside
            it), a directory with `config.json` and `model.safetensors` (as
            written by `save_pretrained`; `pytorch_model.bin` is read with
            `torch.load(weights_only=True)`), or a state dict
            (`model.state_dict()`, torch tensors or NumPy arrays).
        config: the GPT-2 configuration: a dict, a `transformers.GPT2Config` or
            the path of a `config.json`. Required with a state dict; defaults
            to the `config.json` next to the checkpoint.
        dtype: dtype policy of the model. Defaults to the global policy.

    Returns:
        A `keras_attn.models.CausalLM` whose logits equal the PyTorch model's
        in eval mode.

    Raises:
        ValueError: a tensor is missing, mis-shaped or unused (the message names
            it, the expected and the found shape), the file needs pickle, or the
            config asks for something `CausalLM` cannot do (the message names
            the key and its value: `scale_attn_by_inverse_layer_idx=True`,
            `add_cross_attention=True`, `scale_attn_weights=False`, an
            activation other than GELU, ReLU or SiLU).

    Example:

    ```python
    model = causal_lm_from_huggingface("gpt2/")  # a local directory
    logits = model(token_ids)  # (batch, length, 50257)
    ```
    """
    from keras_attn.models.causal_lm import CausalLM

    state, config = _checkpoint.load_huggingface(
        checkpoint, config, _OWNER, "GPT2Config"
    )
    state = canonical_names(state)
    arguments = model_arguments(config)
    ignore = ignored_names(state, arguments)
    model = CausalLM(**arguments, dtype=dtype)
    _checkpoint.apply_plan(model, state, conversion_plan(arguments), _OWNER, ignore)
    return model
