"""`export_saved_model`: a TensorFlow SavedModel from any backend."""

import keras

from keras_attn.export import _generation
from keras_attn.export import _portability
from keras_attn.export import _progress
from keras_attn.export import _signature
from keras_attn.export import _staging
from keras_attn.export import _subprocess

_OWNER = "export_saved_model"
_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


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
    - `generate` (encoder–decoder models given `start_token_id`): the source
      (`encoder_token_ids` or `images`) in, `token_ids` `(batch, max_length)`
      int32 out, by greedy cached decoding (`keras_attn.generation.generate`)
      inside the graph.

    Each backend takes its own route. TensorFlow traces the model directly.
    JAX converts it with jax2tf, native serialization, for `platforms`. Torch
    writes the model as a `.keras` file and exports it in a subprocess running
    Keras on TensorFlow, which must be installed.

    The export is written next to `path` and moved there when complete: on
    failure nothing is left at `path` (an earlier export there stays).

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
        start_token_id: int. The token every generated target starts with; the
            `generate` signature exists only when it is given (encoder–decoder
            models only).
        end_token_id: int or None. The token that ends a generated sequence.
        max_length: int. Length of the generated sequences, fixed at export.
        verbose: bool. Print a line per step.

    Returns:
        `path`.

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
    platforms = _check_platforms(platforms)
    _portability.check_exportable(model, _OWNER)
    signature = _signature.model_signature(model, input_signature, _OWNER)
    generation = _generation.generation_options(
        model, start_token_id, end_token_id, max_length, _OWNER
    )
    if generation is None and _generation.can_generate(model):
        _progress.report(verbose, "no `generate` signature: no start_token_id given")
    backend = keras.backend.backend()
    with _staging.staged(path, directory=True) as staging:
        if backend in ("tensorflow", "jax"):
            _progress.report(verbose, f"tracing the model ({backend} backend)")
            from keras_attn.export import _tf_archive

            _tf_archive.write_saved_model(
                model, staging, signature, generation, platforms
            )
        else:
            options = {
                "signature": _signature.to_json(signature),
                "generation": generation,
                "platforms": list(platforms),
            }
            _subprocess.export_in_backend(
                "tensorflow", "saved_model", model, staging, options, _OWNER, verbose
            )
        _progress.report(verbose, f"moving the SavedModel to {path}")
    _progress.report(verbose, f"wrote {path}")
    return path


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
