"""JAX, 8 virtual CPU devices: `fit` under ModelParallel / DataParallel vs one device.

Run as a script with KERAS_BACKEND=jax; prints one JSON line: the losses of each
run, the variables whose sharding differs from the layout map, the KV cache
layouts, whether generation matches, and the error of a layout that does not
divide.
"""

import os

os.environ["KERAS_BACKEND"] = "jax"
# Eight host devices, after any flags of the caller's (the tests' optimisation level).
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
).strip()

import functools  # noqa: E402
import json  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_attn  # noqa: E402
from keras_attn.generation import generate  # noqa: E402
from tests.distribution import _scenarios  # noqa: E402


def distributed_fit(build, data, distribution, initial_weights):
    """The losses and the model of `build` trained from `initial_weights`."""
    with distribution.scope():
        model = build()
        model.set_weights(initial_weights)
        return _scenarios.fit_losses(model, data), model


def sharding_mismatches(model, layouts):
    """Paths whose sharded shape differs from what the layout map asks for."""
    mismatches, sharded = [], 0
    mesh = layouts.device_mesh
    for variable in model.weights:
        layout = layouts[variable.path]
        axes = layout.axes if layout is not None else (None,) * len(variable.shape)
        expected = tuple(
            size if axis is None else size // _axis_size(mesh, axis)
            for size, axis in zip(variable.shape, axes)
        )
        actual = variable.value.sharding.shard_shape(tuple(variable.shape))
        sharded += expected != tuple(variable.shape)
        if tuple(actual) != expected:
            mismatches.append([variable.path, list(actual), list(expected)])
    return mismatches, sharded


def _axis_size(mesh, axis):
    return mesh.shape[mesh.axis_names.index(axis)]


def caches_of(model, source):
    """The self- and cross-attention caches of generating from `source`."""
    encoded, mask = model.encode(source)
    self_caches, cross_caches, _ = model.initialize_caches(encoded, mask, 6)
    return self_caches, cross_caches


def decode_twice(model, token_ids):
    """Logits of 3 cached tokens and a cached step, the uncached logits, and
    the caches after the first call."""
    caches = model.initialize_caches(4, 6)
    cached, caches = model._decode(token_ids[:, :3], caches)
    step, _ = model._decode(token_ids[:, 3:4], caches, start_index=3)
    full, _ = model._decode(token_ids[:, :4])
    return cached, step, full, caches


def spec(array):
    """The sharding's axis per dimension (a compiled program's output omits
    trailing None axes)."""
    axes = list(array.sharding.spec)
    return [str(axis) for axis in axes + [None] * (array.ndim - len(axes))]


def main():
    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices)
    layouts = keras_attn.distribution.layout_map(mesh)
    model_parallel = keras.distribution.ModelParallel(
        layout_map=layouts, batch_dim_name="batch"
    )
    data_parallel = keras.distribution.DataParallel(devices=devices)
    result = {"devices": len(devices)}

    cases = {
        "vision_transformer": (
            _scenarios.vision_transformer,
            _scenarios.vision_data(),
            {"data_parallel": data_parallel, "model_parallel": model_parallel},
        ),
        "transformer": (
            _scenarios.transformer,
            _scenarios.translation_data(),
            {"model_parallel": model_parallel},
        ),
        "causal_lm": (
            _scenarios.causal_lm,
            _scenarios.language_data(),
            {"model_parallel": model_parallel},
        ),
    }
    models = {}
    for name, (build, data, distributions) in cases.items():
        keras.utils.set_random_seed(0)
        reference = build()
        initial = reference.get_weights()
        losses = {"single": _scenarios.fit_losses(reference, data)}
        for kind, distribution in distributions.items():
            losses[kind], model = distributed_fit(build, data, distribution, initial)
            if kind == "model_parallel":
                mismatches, sharded = sharding_mismatches(model, layouts)
                losses["sharding_mismatches"] = mismatches
                losses["sharded_variables"] = sharded
                losses["variables"] = len(model.weights)
        result[name] = losses
        models[name] = (reference, model)

    # The KV caches of generation, and the tokens, with the trained Transformer.
    reference, model = models["transformer"]
    source = _scenarios.translation_data(4)[0]["encoder_token_ids"]
    options = dict(start_token_id=1, end_token_id=2, max_length=6)
    with model_parallel.scope():
        self_caches, cross_caches = jax.jit(functools.partial(caches_of, model))(source)
        tokens = generate(model, source, **options)
    result["cache"] = {
        "self_attention": spec(self_caches[0]),
        "cross_attention": spec(cross_caches[0]),
    }
    result["generate_equal"] = bool(
        np.array_equal(
            np.asarray(tokens), np.asarray(generate(reference, source, **options))
        )
    )

    # The trained CausalLM's caches (grouped-query: 4 key/value heads on 4
    # devices), and its cached logits against its uncached ones.
    model = models["causal_lm"][1]
    token_ids = _scenarios.language_data(4)[0]["token_ids"]
    with model_parallel.scope():
        # One program: eagerly, every primitive would compile for its shardings.
        cached, step, full, caches = jax.jit(functools.partial(decode_twice, model))(
            token_ids
        )
    result["causal_lm_cache"] = spec(caches[0])
    result["causal_lm_cached_difference"] = float(
        np.abs(np.concatenate([cached, step], axis=1) - np.asarray(full)).max()
    )

    # A layout that does not divide: 3 heads on a model axis of 4 devices.
    try:
        with keras_attn.distribution.model_parallel(mesh).scope():
            _scenarios.three_heads_vision_transformer()
        result["checked_error"] = None
    except ValueError as error:
        result["checked_error"] = str(error)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
