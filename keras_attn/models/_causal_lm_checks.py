"""The checks of `CausalLM`'s constructor arguments and call inputs.

Each raises a `ValueError` that names the model, the argument and the value (a
tensor by its dtype and shape), as `keras_attn._checks` does for every layer.
"""

import keras
import numpy as np
from keras import ops

from keras_attn import _checks

POSITION_EMBEDDINGS = ("learned", "sinusoidal", "rotary")
PACKED_INPUTS = ("segment_ids", "positions")


def check_max_sequence_length(owner, max_sequence_length, position_embedding):
    """A positive int; None too, except for a learned table (it sizes it)."""
    _checks.check_choice(
        owner, "position_embedding", position_embedding, POSITION_EMBEDDINGS
    )
    learned = position_embedding == "learned"
    if max_sequence_length is None and learned:
        expected = 'a positive integer with position_embedding="learned"'
        _checks.fail(owner, "max_sequence_length", None, expected)
    return _checks.check_positive_int(
        owner, "max_sequence_length", max_sequence_length, allow_none=not learned
    )


def check_padding_id(owner, padding_id, vocabulary_size):
    """A token id, or None: no token is padding."""
    if padding_id is None:
        return None
    return _checks.check_token_id(owner, "padding_id", padding_id, vocabulary_size)


def per_layer_windows(owner, sliding_window, num_layers):
    """One window (a positive int or None) per layer from `sliding_window`."""
    if not isinstance(sliding_window, (list, tuple)):
        window = _checks.check_positive_int(
            owner, "sliding_window", sliding_window, allow_none=True
        )
        return [window] * num_layers
    if len(sliding_window) != num_layers:
        expected = f"an int, None, or a list of num_layers={num_layers} of them"
        _checks.fail(owner, "sliding_window", sliding_window, expected)
    return [
        _checks.check_positive_int(owner, f"sliding_window[{i}]", w, allow_none=True)
        for i, w in enumerate(sliding_window)
    ]


def check_max_length(owner, max_length, limit):
    """A cache length: positive, at most `limit` (None: any); tensors pass."""
    if not _checks.is_integer(max_length):
        return
    _checks.check_positive_int(owner, "max_length", max_length)
    if limit is not None and max_length > limit:
        expected = f"at most max_sequence_length ({limit})"
        _checks.fail(owner, "max_length", max_length, expected)


def check_activation(owner, activation):
    try:
        keras.activations.get(activation)
    except ValueError:
        expected = "a Keras activation name or a registered activation function"
        _checks.fail(owner, "activation", activation, expected)


def check_even_features(owner, position_embedding, hidden_dim, num_heads):
    """Sinusoids pair the model's features, rotary angles each head's."""
    if position_embedding == "sinusoidal" and hidden_dim % 2:
        expected = 'even with position_embedding="sinusoidal"'
        _checks.fail(owner, "hidden_dim", hidden_dim, expected)
    if position_embedding == "rotary" and (hidden_dim // num_heads) % 2:
        expected = "a divisor of hidden_dim leaving an even head size (rotary)"
        _checks.fail(owner, "num_heads", num_heads, expected)


def check_input_names(owner, inputs, packed_inputs):
    """The keys of a call's dict: `token_ids`, and only the model's inputs."""
    names = ("token_ids", "padding_mask") + (PACKED_INPUTS if packed_inputs else ())
    for name, value in inputs.items():
        if name in PACKED_INPUTS and not packed_inputs:
            fail_tensor(
                owner,
                name,
                value,
                "omitted: the model was built with packed_inputs=False (build "
                "it with packed_inputs=True for packed rows)",
            )
        if name not in names:
            _checks.fail(
                owner, "inputs", sorted(inputs), f"a dict with keys among {names}"
            )
    if "token_ids" not in inputs:
        _checks.fail(owner, "inputs", sorted(inputs), "a dict with 'token_ids'")


def check_inputs(owner, inputs, vocabulary_size, max_sequence_length, packed):
    """The completed inputs of a call: shapes, token ids, positions."""
    check_input_shapes(owner, inputs, max_sequence_length)
    _checks.check_token_ids(owner, "token_ids", inputs["token_ids"], vocabulary_size)
    if packed and max_sequence_length is not None:
        check_positions(owner, inputs["positions"], max_sequence_length)


def check_input_shapes(owner, inputs, max_sequence_length):
    """Every input `(B, T)` like `token_ids`, `T` at most `max_sequence_length`."""
    token_ids = inputs["token_ids"]
    shape = tuple(token_ids.shape)
    length, limit = shape[1], max_sequence_length
    # Unknown sizes are None, or symbolic (jax2tf export) and not comparable.
    if _known(length) and _known(limit) and length > limit:
        expected = f"at most max_sequence_length={limit} tokens long"
        fail_tensor(owner, "token_ids", token_ids, expected)
    for name, value in inputs.items():
        received = tuple(value.shape)
        if len(received) != 2 or any(
            _known(a) and _known(b) and a != b for a, b in zip(received, shape)
        ):
            fail_tensor(owner, name, value, f"of the shape of `token_ids` {shape}")


def _known(size):
    return isinstance(size, int)


def check_positions(owner, positions, limit):
    """Concrete positions in [0, limit); traced ones pass (as token ids do in
    `_checks.check_token_ids`)."""
    values = _checks.concrete_values(positions)
    if values is None:
        return
    outside = (values < 0) | (values >= limit)
    if np.any(outside):
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        raise ValueError(
            f"{owner}: argument `positions` must hold positions in [0, {limit}) "
            f"(max_sequence_length); received {values[index]} at index {index}."
        )


def fail_tensor(owner, argument, tensor, expected):
    """A `ValueError` quoting the dtype and shape of `tensor`, not its values."""
    if not hasattr(tensor, "shape"):
        tensor = ops.convert_to_tensor(tensor)
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    raise ValueError(
        f"{owner}: argument `{argument}` must be {expected}; received a tensor "
        f"of dtype {dtype} and shape {tuple(tensor.shape)}."
    )
