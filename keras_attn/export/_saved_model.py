"""`export_saved_model`: a TensorFlow SavedModel from any backend.

TensorFlow and JAX write it in this process (`write_saved_model`): Keras'
`ExportArchive` traces each endpoint into a `tf.function`, directly on
TensorFlow, and on JAX through jax2tf with native serialization (StableHLO run by
TensorFlow's `XlaCallModule` op) for the requested platforms, with a symbolic
batch size and sequence lengths. A torch model takes the subprocess route: Keras'
own torch route needs torch_xla.
"""

import importlib.util

import keras

from keras_attn.export import _keras_file
from keras_attn.export import _signature
from keras_attn.export import _staging
from keras_attn.export import _subprocess

_OWNER = "export_saved_model"
_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
_GENERATED_TOKENS = "token_ids"


def export_saved_model(
    model,
    path,
    *,
    input_signature=None,
    platforms=("cpu", "cuda"),
    start_token_id=None,
    end_token_id=None,
    max_length=32,
    verbose=True,
):
    """Export a model as a TensorFlow SavedModel that serves without Keras.

    The SavedModel needs TensorFlow alone to load and run (TensorFlow Serving,
    `tf.saved_model.load`): no `keras`, no `keras_attn`. Its signatures:

    - `serving_default`: the model's forward pass (inference mode). Inputs are
      named after the model's `keras.Input`s (`images`; `encoder_token_ids`
      and `decoder_token_ids`); the output is `outputs` for a single-output
      model. The batch size is dynamic, and so are sequence lengths; image
      height and width are the model's `image_size`.
    - `generate` (encoder–decoder models given `start_token_id`, and every
      `CausalLM`): the source (`encoder_token_ids` or `images`), or a
      `CausalLM`'s prompts `token_ids` `(batch, width <= max_length)`
      right-padded with its padding id, in; `token_ids` `(batch, max_length)`
      int32 out, by greedy cached decoding (`keras_attn.generation.generate`)
      inside the graph.

    Each backend takes its own route. TensorFlow traces the model directly.
    JAX converts it with jax2tf, native serialization, for `platforms`. Torch
    writes the model as a `.keras` file and exports it in a subprocess running
    Keras on TensorFlow. Every route needs TensorFlow installed; without it the
    export fails before doing anything, saying what to install.

    The export is written next to `path` and moved there when complete: on
    failure `path` is left as it was (an earlier export there stays).

    Args:
        model: a built functional `keras.Model`, such as a `keras_attn.models`
            model. It must be savable as `.keras`: no `Lambda` layer, every
            custom layer registered.
        path: the SavedModel directory to write; replaced if it exists.
        input_signature: None for the model's inputs, or `{name: spec}` (one
            spec for a single-input model) with `shape` and `dtype`
            (`keras.InputSpec`, `tf.TensorSpec` or a pair `(shape, dtype)`),
            `None` for a dynamic size.
        platforms: platforms the JAX route compiles for, among `"cpu"`,
            `"cuda"`, `"rocm"`, `"tpu"`. Ignored on the other backends, whose
            TensorFlow graph runs anywhere.
        start_token_id: int. The token every generated target starts with; an
            encoder–decoder model's `generate` signature exists only when it is
            given. For a `CausalLM` (whose `generate` signature always exists):
            None, or a token put before every prompt.
        end_token_id: int or None. The token that ends a generated sequence.
        max_length: int. Length of the generated sequences, fixed at export.
        verbose: bool. Print a line per step.

    Returns:
        `path`.

    Raises:
        ModuleNotFoundError: TensorFlow is not installed.
        ValueError: the model or an argument cannot be exported (the message
            names the layer or the argument).

    Example:

    ```python
    keras_attn.export.export_saved_model(
        transformer, "exported/translator", start_token_id=1, end_token_id=2
    )
    # Then, with TensorFlow only:
    served = tf.saved_model.load("exported/translator")
    tokens = served.signatures["generate"](encoder_token_ids=source)["token_ids"]
    ```
    """
    check_packages()
    platforms = _check_platforms(platforms)
    _keras_file.check_portable(model, _OWNER)
    signature = _signature.model_signature(model, input_signature, _OWNER)
    generation = _generation_options(model, start_token_id, end_token_id, max_length)
    if generation is None and _can_generate(model):
        _staging.report(verbose, "no `generate` signature: no start_token_id given")
    backend = keras.backend.backend()
    with _staging.staged(path, directory=True) as staging:
        if backend in ("tensorflow", "jax"):
            _staging.report(verbose, f"tracing the model ({backend} backend)")
            write_saved_model(model, staging, signature, generation, platforms)
        else:
            options = {
                "signature": _signature.to_json(signature),
                "generation": generation,
                "platforms": list(platforms),
            }
            _subprocess.export_in_backend(
                "tensorflow", "saved_model", model, staging, options, _OWNER, verbose
            )
        _staging.report(verbose, f"moving the SavedModel to {path}")
    _staging.report(verbose, f"wrote {path}")
    return path


def check_packages():
    """Raise a `ModuleNotFoundError` with the `pip` line when TensorFlow is missing."""
    if importlib.util.find_spec("tensorflow") is None:
        raise ModuleNotFoundError(
            f"{_OWNER}: a SavedModel is written by TensorFlow on every backend, "
            "but tensorflow is not installed. Install it with "
            "`pip install tensorflow`.",
            name="tensorflow",
        )


def _check_platforms(platforms):
    if isinstance(platforms, str):
        platforms = (platforms,)
    platforms = tuple(platforms)
    if not platforms or any(p not in _PLATFORMS for p in platforms):
        raise ValueError(
            f"{_OWNER}: argument `platforms` must be a non-empty sequence of "
            f"{_PLATFORMS}; received {platforms!r}."
        )
    return platforms


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
    serving_kwargs = endpoint_kwargs
    if endpoint_kwargs and _is_language_model(model):
        jax2tf_kwargs = {
            **endpoint_kwargs["jax2tf_kwargs"],
            "polymorphic_shapes": [_shared_length_shapes(signature)],
        }
        serving_kwargs = {**endpoint_kwargs, "jax2tf_kwargs": jax2tf_kwargs}
    archive.add_endpoint(
        "serving_default",
        _serving_function(model),
        [_structured_specs(model, signature)],
        **serving_kwargs,
    )
    if generation is not None:
        source = _signature.source_name_of(signature)
        source_spec = _signature.to_input_specs(signature)[source]
        archive.add_endpoint(
            "generate",
            _generate_function(model, generation),
            [source_spec],
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


def _shared_length_shapes(signature):
    """jax2tf shapes of a `CausalLM`'s inputs, `(batch, length)` each: Keras
    names every unknown size apart, and then the padding mask, segment ids and
    positions could not be proven as long as the token ids."""

    def shape(dims):
        names = ("batch", "length")
        return (
            "("
            + ", ".join(names[i] if d is None else str(d) for i, d in enumerate(dims))
            + ")"
        )

    return {name: shape(dims) for name, (dims, _) in signature.items()}


def _generation_options(model, start_token_id, end_token_id, max_length):
    """The options of the `generate` signature, or None when there is none.

    Encoder–decoder models (`Transformer`, `ImageCaptioner`) generate when told
    the token every target starts with, a `CausalLM` always. The token ids and
    `max_length` are checked here, as `generate` checks them, so that a bad one
    fails before anything is traced.
    """
    from keras_attn.generation.decoding import check_arguments

    if not _can_generate(model):
        if start_token_id is not None:
            raise ValueError(
                f"{_OWNER}: argument `start_token_id` is only for models that "
                f"generate (Transformer, ImageCaptioner, CausalLM); received "
                f"{start_token_id!r} for a {type(model).__name__}."
            )
        return None
    if start_token_id is None and not _is_language_model(model):
        return None
    start_token_id, end_token_id, max_length = check_arguments(
        model, start_token_id, end_token_id, max_length, owner=_OWNER
    )
    return {
        "start_token_id": start_token_id,
        "end_token_id": end_token_id,
        "max_length": max_length,
    }


def _can_generate(model):
    from keras_attn.models import EncoderDecoderModel

    return isinstance(model, EncoderDecoderModel) or _is_language_model(model)


def _is_language_model(model):
    from keras_attn.models import CausalLM

    return isinstance(model, CausalLM)


def _generate_function(model, options):
    """`fn(source) -> {"token_ids": (batch, max_length) int32}` in keras.ops."""
    from keras_attn.generation import generate

    def generate_tokens(source):
        tokens = generate(model, source, sampler="greedy", use_cache=True, **options)
        return {_GENERATED_TOKENS: tokens}

    return generate_tokens
