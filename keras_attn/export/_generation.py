"""The `generate` signature: greedy cached decoding inside the exported graph."""

from keras_attn.export import _signature

OUTPUT_NAME = "token_ids"


def generation_options(model, start_token_id, end_token_id, max_length, owner):
    """The options of the `generate` signature, or None when there is none.

    Only encoder–decoder models (`Transformer`, `ImageCaptioner`) generate, and
    only when told the token every target starts with. The token ids and
    `max_length` are checked by `keras_attn.generation.generate` when the
    signature is traced.
    """
    if not can_generate(model):
        if start_token_id is not None:
            raise ValueError(
                f"{owner}: argument `start_token_id` is only for encoder–decoder "
                f"models (Transformer, ImageCaptioner); received {start_token_id!r} "
                f"for a {type(model).__name__}."
            )
        return None
    if start_token_id is None:
        return None
    return {
        "start_token_id": start_token_id,
        "end_token_id": end_token_id,
        "max_length": max_length,
    }


def generate_function(model, options):
    """`fn(source) -> {"token_ids": (batch, max_length) int32}` in keras.ops."""
    from keras_attn.generation import generate

    def generate_tokens(source):
        tokens = generate(model, source, sampler="greedy", use_cache=True, **options)
        return {OUTPUT_NAME: tokens}

    return generate_tokens


def generate_signature(signature):
    """The one input of `generate`: the source, as in `serving_default`."""
    name = _signature.source_name_of(signature)
    return {name: signature[name]}


def can_generate(model):
    from keras_attn.models import EncoderDecoderModel

    return isinstance(model, EncoderDecoderModel)
