"""SavedModel from a TensorFlow- or JAX-backend model, in this process.

Keras' `ExportArchive` traces each endpoint into a `tf.function`: directly on
TensorFlow; on JAX through jax2tf with native serialization (StableHLO run by
TensorFlow's `XlaCallModule` op) for the requested platforms, with a symbolic
batch size and sequence lengths.
"""

import keras

from keras_attn.export import _generation
from keras_attn.export import _signature


def write_saved_model(model, directory, signature, generation, platforms):
    """Write `serving_default` (and `generate` when `generation`) to `directory`.

    Args:
        model: a TensorFlow- or JAX-backend model.
        directory: an empty, existing directory.
        signature: `{name: (shape, dtype)}` from `_signature.model_signature`.
        generation: the options of `generate`, or None for no such signature.
        platforms: platforms the JAX route serializes for (`"cpu"`, `"cuda"`).
    """
    from keras.export import ExportArchive

    archive = ExportArchive()
    endpoint_kwargs = _endpoint_kwargs(platforms)
    archive.add_endpoint(
        "serving_default",
        _serving_function(model),
        [_structured_specs(model, signature)],
        **endpoint_kwargs,
    )
    if generation is not None:
        source = _generation.generate_signature(signature)
        (spec,) = _signature.to_input_specs(source).values()
        archive.add_endpoint(
            "generate",
            _generation.generate_function(model, generation),
            [spec],
            **endpoint_kwargs,
        )
    archive.write_out(directory, verbose=False)


def _serving_function(model):
    def serve(inputs):
        return _signature.named_outputs(model, model(inputs, training=False))

    return serve


def _structured_specs(model, signature):
    specs = _signature.to_input_specs(signature)
    if _signature.is_dict_input(model):
        return specs
    values = list(specs.values())
    return values[0] if len(values) == 1 else values


def _endpoint_kwargs(platforms):
    if keras.backend.backend() != "jax":
        return {}
    return {"jax2tf_kwargs": {"native_serialization_platforms": tuple(platforms)}}
