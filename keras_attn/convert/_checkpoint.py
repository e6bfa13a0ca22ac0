"""Reading foreign checkpoints without pickle, and checked copies into Keras models.

Each converter describes its mapping as a *plan*, made by a pure function of the
model configuration: a list of `Entry(target, source, shape, transform)` saying
which source tensor, of which shape, fills which model variable after which
transform (a transpose, a reshape into heads). `apply_plan` checks every name
and shape, then every target, before it writes anything, and each error names
the tensor, the shape expected and the shape found.
"""

import json
import os
import re
import zipfile
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

# Formats read without unpickling arbitrary objects.
_SAFETENSORS = ".safetensors"
_NPZ = ".npz"
_TORCH = (".pt", ".pth", ".bin")


class Entry(NamedTuple):
    """One model variable and where it comes from.

    `target` is the variable's path in the model (`encoder_layer_0/...`);
    `source` the checkpoint name, or `None` for a zero-filled variable (a bias
    the source does not have); `shape` the source shape expected; `transform`
    maps the source array to the variable's layout.
    """

    target: str
    source: str | None
    shape: tuple
    transform: Callable = np.asarray


def read_state_dict(path):
    """Reads `{name: numpy array}` from a `.safetensors`, `.npz` or torch file.

    Torch files (`.pt`, `.pth`, `.bin`) are read with
    `torch.load(weights_only=True)`, `.npz` with `allow_pickle=False`; anything
    else, a pickle in particular, is refused.

    Args:
        path: string or path-like, the checkpoint file.

    Returns:
        dict from tensor name to `numpy.ndarray`.

    Raises:
        ValueError: the file is missing, of an unknown format, or needs pickle.

    Example:

    ```python
    state = read_state_dict("vit/model.safetensors")
    state["vit.embeddings.cls_token"].shape  # (1, 1, 768)
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(
            f"read_state_dict: argument `path` must be an existing checkpoint file; "
            f"received {path!r}."
        )
    suffix = os.path.splitext(path)[1].lower()
    if suffix == _SAFETENSORS:
        return _read_safetensors(path)
    if suffix == _NPZ:
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except ValueError as error:  # object arrays need pickle
            raise ValueError(_pickle_refused(path, error)) from None
    if suffix in _TORCH:
        return _read_torch(path)
    raise ValueError(
        f"read_state_dict: argument `path` must name a {_SAFETENSORS}, {_NPZ} or "
        f"torch ({', '.join(_TORCH)}) checkpoint; received {path!r}. Pickle files "
        f"are refused: loading them can run arbitrary code."
    )


def _read_safetensors(path):
    from safetensors.numpy import load_file

    try:
        state = load_file(path)
    except TypeError:  # bfloat16 without ml_dtypes loaded: read through torch
        from safetensors.torch import load_file as load_torch_file

        return state_dict_to_numpy(load_torch_file(path))
    # ml_dtypes (imported with JAX) lets NumPy hold bfloat16; Keras wants float32.
    return {
        name: array.astype("float32") if str(array.dtype) == "bfloat16" else array
        for name, array in state.items()
    }


def _read_torch(path):
    if not zipfile.is_zipfile(path):  # the legacy torch format is a bare pickle
        raise ValueError(_pickle_refused(path, "not a torch zip archive"))
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError for unsafe globals
        raise ValueError(_pickle_refused(path, error)) from None
    return state_dict_to_numpy(state)


def _pickle_refused(path, reason):
    return (
        f"read_state_dict: argument `path` must be a checkpoint readable without "
        f"pickle (safetensors, npz without object arrays, or a torch file of "
        f"tensors for torch.load(weights_only=True)); received {path!r} ({reason})."
    )


def state_dict_to_numpy(state):
    """A copy of `state` with torch tensors (or anything array-like) as NumPy."""
    if not isinstance(state, dict):
        raise ValueError(
            f"state_dict_to_numpy: argument `state` must be a dict of tensors; "
            f"received a {type(state).__name__}."
        )
    converted = {}
    for name, value in state.items():
        if hasattr(value, "detach"):  # torch.Tensor, without importing torch
            value = value.detach().cpu().float().numpy()
        converted[name] = np.asarray(value)
    return converted


def read_json(path):
    """The JSON object in `path` (a Hugging Face `config.json`)."""
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _take(state, entry, owner):
    if entry.source not in state:
        last = re.split(r"[./]", entry.source)[-1]
        near = sorted(n for n in state if re.split(r"[./]", n)[-1] == last)[:5]
        raise ValueError(
            f"{owner}: the checkpoint has no tensor {entry.source!r} (expected shape "
            f"{entry.shape}, for {entry.target!r}); found none. Names that end "
            f"alike: {near or 'none'}."
        )
    array = np.asarray(state[entry.source])
    if entry.shape is not None and tuple(array.shape) != tuple(entry.shape):
        raise ValueError(
            f"{owner}: tensor {entry.source!r} must have shape {tuple(entry.shape)} "
            f"(for {entry.target!r}); found shape {tuple(array.shape)}."
        )
    return entry.transform(array)


def apply_plan(model, state, plan, owner, ignore=()):
    """Checks `state` against `plan`, then copies it into `model`'s variables.

    Args:
        model: a built Keras model whose variables have the plan's paths.
        state: dict from source name to array.
        plan: list of `Entry`.
        owner: string, the function named in error messages.
        ignore: source names that may be in `state` without being used.

    Raises:
        ValueError: a source tensor is missing or mis-shaped, a checkpoint
            tensor is not used, or a model variable is not covered.
    """
    variables = {v.path: v for v in model.weights}
    values = {}
    for entry in plan:
        value = _zeros_for(variables, entry) if entry.source is None else None
        if value is None:
            value = _take(state, entry, owner)
        variable = variables.get(entry.target)
        if variable is None:
            raise ValueError(
                f"{owner}: the model has no variable {entry.target!r} (for "
                f"{entry.source!r}); it has {sorted(variables)}."
            )
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{owner}: tensor {entry.source!r} gives {entry.target!r} shape "
                f"{tuple(value.shape)}; the model variable has shape "
                f"{tuple(variable.shape)}."
            )
        values[entry.target] = value
    used = {entry.source for entry in plan}
    unused = sorted(set(state) - used - set(ignore))
    if unused:
        raise ValueError(
            f"{owner}: the checkpoint has tensors this model has no place for: "
            f"{unused}."
        )
    uncovered = sorted(set(variables) - set(values))
    if uncovered:
        raise ValueError(f"{owner}: no checkpoint tensor fills {uncovered}.")
    for path, value in values.items():
        variables[path].assign(value.astype(variables[path].dtype))


def _zeros_for(variables, entry):
    variable = variables.get(entry.target)
    return None if variable is None else np.zeros(variable.shape, "float32")


def dense_kernel(weight):
    """A `torch.nn.Linear` weight `(out, in)` as a Keras `Dense` kernel `(in, out)`."""
    return np.ascontiguousarray(weight.T)


def torch_norm(target, source, dim):
    """Entries of a Keras `LayerNormalization` from a `torch.nn.LayerNorm`."""
    return [
        Entry(f"{target}/gamma", f"{source}.weight", (dim,)),
        Entry(f"{target}/beta", f"{source}.bias", (dim,)),
    ]


def torch_dense(target, source, units_in, units_out):
    """Entries of a Keras `Dense` from a `torch.nn.Linear`."""
    return [
        Entry(
            f"{target}/kernel", f"{source}.weight", (units_out, units_in), dense_kernel
        ),
        Entry(f"{target}/bias", f"{source}.bias", (units_out,)),
    ]


def heads_kernel(num_heads):
    """`(heads * head_dim, hidden)` Linear weight → `(hidden, heads, head_dim)`."""

    def transform(weight):
        return np.ascontiguousarray(weight.T.reshape(weight.shape[1], num_heads, -1))

    return transform


def heads_bias(num_heads):
    """`(heads * head_dim,)` → `(heads, head_dim)`."""

    def transform(bias):
        return bias.reshape(num_heads, -1)

    return transform


def fused_qkv_entries(target, weight, bias, dim, num_heads, conv1d=False):
    """Entries of the query, key and value projections of the attention layer
    `target` from one fused `[query | key | value]` projection: the source
    tensors `weight`, `(3 * dim, dim)` as in a `torch.nn.Linear` (torch's
    `in_proj_weight`) or `(dim, 3 * dim)` with `conv1d` (GPT-2's `c_attn`), and
    `bias`, `(3 * dim,)`."""
    linear_kernel = heads_kernel(num_heads)

    def to_kernel(part):
        return linear_kernel(part.T if conv1d else part)

    entries = []
    for index, name in enumerate(("query", "key", "value")):
        entries += [
            Entry(
                f"{target}/{name}/kernel",
                weight,
                (dim, 3 * dim) if conv1d else (3 * dim, dim),
                _fused_part(index, 1 if conv1d else 0, to_kernel),
            ),
            Entry(
                f"{target}/{name}/bias",
                bias,
                (3 * dim,),
                _fused_part(index, 0, heads_bias(num_heads)),
            ),
        ]
    return entries


def _fused_part(index, axis, transform):
    """Part `index` of three equal parts of an array along `axis`, transformed."""

    def take(array):
        width = array.shape[axis] // 3
        part = np.take(array, np.arange(index * width, (index + 1) * width), axis)
        return transform(part)

    return take


def output_kernel(num_heads):
    """`(hidden, heads * head_dim)` Linear weight → `(heads, head_dim, hidden)`."""

    def transform(weight):
        return np.ascontiguousarray(weight.T.reshape(num_heads, -1, weight.shape[0]))

    return transform


def resample_positions(table, old_grid, new_grid, num_prefix_tokens=1):
    """A position table `(1, P + old², D)` resampled to `new_grid` (NumPy in/out).

    The bicubic kernel of `keras_attn.ops.resample_position_grid` (PyTorch's,
    a = -0.75), so a converted model equals the source library's interpolation.
    """
    from keras import ops

    from keras_attn.ops.resize import resample_position_grid

    table = resample_position_grid(
        table, old_grid, new_grid, num_prefix_tokens=num_prefix_tokens
    )
    return np.asarray(ops.convert_to_numpy(table))


_HUGGINGFACE_CONFIG = "config.json"
# What `save_pretrained` writes: safetensors since transformers 4.35, torch before.
_HUGGINGFACE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def load_huggingface(checkpoint, config, owner, config_class):
    """`(state, config)` of a Hugging Face checkpoint: a directory with
    `config.json` and its weights, a weights file with `config.json` beside it,
    or an in-memory state dict with `config` (a dict, a `config_class` instance
    such as `ViTConfig`, or a `config.json` path)."""
    if isinstance(checkpoint, dict):
        state = state_dict_to_numpy(checkpoint)
    else:
        path = os.fspath(checkpoint)
        if os.path.isdir(path):
            if config is None:
                config = os.path.join(path, _HUGGINGFACE_CONFIG)
            path = _huggingface_weights_file(path, owner)
        elif config is None:
            config = os.path.join(os.path.dirname(path), _HUGGINGFACE_CONFIG)
        state = read_state_dict(path)
    if isinstance(config, (str, os.PathLike)):
        if not os.path.isfile(config):
            raise ValueError(
                f"{owner}: argument `config` must be a dict, a `{config_class}` or "
                f"a `config.json` path; no file {os.fspath(config)!r}."
            )
        config = read_json(config)
    elif hasattr(config, "to_dict"):  # a transformers configuration
        config = config.to_dict()
    if not isinstance(config, dict):
        raise ValueError(
            f"{owner}: argument `config` must be a dict, a `{config_class}` or a "
            f"`config.json` path when `checkpoint` is a state dict; received "
            f"{config!r}."
        )
    return state, config


def _huggingface_weights_file(directory, owner):
    for name in _HUGGINGFACE_WEIGHTS:
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise ValueError(
        f"{owner}: argument `checkpoint` must be a directory with one of "
        f"{list(_HUGGINGFACE_WEIGHTS)} (sharded checkpoints are not read); found "
        f"{sorted(os.listdir(directory))} in {directory!r}."
    )
