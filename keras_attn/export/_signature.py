"""The input signature of an exported model: one named, dynamic-batch spec per input.

A signature here is a plain dict `{input_name: (shape, dtype)}` with `None` for
dynamic sizes. Plain values travel to an export subprocess as JSON, and each route
turns them into its own specs (`keras.InputSpec`, `torch.export.Dim`).
"""

import keras

# The token-id input that generation feeds itself; the other input is the source.
DECODER_INPUT = "decoder_token_ids"
LANGUAGE_MODEL_INPUT = "token_ids"


def model_signature(model, input_signature=None, owner="export"):
    """`{name: (shape, dtype)}` for the model's inputs.

    Names are the model's `keras.Input` names. The batch size is dynamic; so are
    the other sizes the model leaves open (sequence lengths), except the height
    and width of images, which are the model's `image_size`: the position table
    of a Vision Transformer is made for it.

    Args:
        model: a built functional `keras.Model`.
        input_signature: None, or a dict `{name: spec}` (or one spec for a
            single-input model) whose specs have `shape` and `dtype`
            (`keras.InputSpec`, `keras.KerasTensor`, `tf.TensorSpec`, or a pair
            `(shape, dtype)`), to replace the default.
        owner: the function named in error messages.

    Returns:
        A dict `{name: (shape tuple, dtype string)}` in the order of the model's
        inputs.
    """
    names = input_names(model)
    if input_signature is None:
        return {
            name: (_default_shape(model, tensor), _dtype_name(tensor.dtype))
            for name, tensor in zip(names, model.inputs)
        }
    if not isinstance(input_signature, dict):
        if len(names) != 1:
            raise ValueError(
                f"{owner}: argument `input_signature` must be a dict keyed by the "
                f"model's input names {names}; received {input_signature!r}."
            )
        input_signature = {names[0]: input_signature}
    if sorted(input_signature) != sorted(names):
        raise ValueError(
            f"{owner}: argument `input_signature` must have exactly the model's "
            f"input names {names} as keys; received keys {sorted(input_signature)}."
        )
    return {name: _shape_and_dtype(input_signature[name], owner) for name in names}


def input_names(model):
    """The names of the model's `keras.Input`s, in the order of `model.inputs`."""
    return [tensor.name for tensor in model.inputs]


def is_dict_input(model):
    return isinstance(model.input, dict)


def source_name_of(signature):
    """The input `generate` takes: a `CausalLM`'s prompts (`token_ids`), or
    what `model.encode` takes (token ids or images)."""
    if LANGUAGE_MODEL_INPUT in signature:
        return LANGUAGE_MODEL_INPUT
    return next(name for name in signature if name != DECODER_INPUT)


def to_input_specs(signature):
    """`{name: keras.InputSpec}` (named, so exported signatures keep the name)."""
    return {
        name: keras.InputSpec(shape=shape, dtype=dtype, name=name)
        for name, (shape, dtype) in signature.items()
    }


def to_json(signature):
    return {name: [list(shape), dtype] for name, (shape, dtype) in signature.items()}


def from_json(data):
    return {name: (tuple(shape), dtype) for name, (shape, dtype) in data.items()}


def _default_shape(model, tensor):
    shape = (None, *tensor.shape[1:])
    image_size = getattr(model, "image_size", None)
    if len(shape) == 4 and image_size is not None and None in shape[1:3]:
        height, width = (
            (image_size, image_size) if isinstance(image_size, int) else image_size
        )
        shape = (None, height, width, shape[3])
    return shape


def _shape_and_dtype(spec, owner):
    shape, dtype = spec if isinstance(spec, (tuple, list)) else (spec.shape, spec.dtype)
    shape = tuple(None if size is None else int(size) for size in shape)
    return shape, _dtype_name(dtype)


def _dtype_name(dtype):
    name = getattr(dtype, "name", dtype)
    return keras.backend.standardize_dtype(name)


def named_outputs(model, outputs):
    """The model's outputs as a dict: `{"outputs": x}` for a single output."""
    if isinstance(outputs, dict):
        return dict(outputs)
    if isinstance(outputs, (list, tuple)):
        return dict(zip(model.output_names, outputs))
    return {"outputs": outputs}


def model_inputs(model, tensors):
    """What to call the model with: the dict, or the one tensor, or the list."""
    if is_dict_input(model):
        return dict(tensors)
    values = list(tensors.values())
    return values[0] if len(values) == 1 else values
