"""Autoregressive decoding of encoder–decoder models, cached or not.

The loop itself is a `keras_hub.samplers.Sampler` (greedy, beam, top-k, top-p, ...),
which runs `keras.ops.while_loop`, so decoding traces into one graph on TensorFlow
and JAX. We supply the `next` function: the logits of the token at `index` given the
tokens before it. The cached `next` feeds only the newest token and updates the
per-layer key/value caches; the uncached one re-runs the decoder on the whole prefix.
Both see the same tokens at the same positions, so they choose the same tokens.
"""

import contextlib

import keras
from keras import ops

from keras_attn import _checks

_OWNER = "generate"
_SAMPLER_NAMES = ("greedy", "beam", "top_k", "top_p", "random")


def generate(
    model,
    inputs,
    *,
    start_token_id,
    end_token_id=None,
    max_length=32,
    sampler="greedy",
    use_cache=True,
):
    """Generate target tokens from an encoder–decoder model.

    The source (token ids for a `Transformer`, images for an `ImageCaptioner`) is
    encoded once; the decoder then runs from `start_token_id` until every sequence
    has produced `end_token_id` or `max_length` tokens exist. The padding token is
    never generated. Positions after a sequence's end token hold the padding id.

    Args:
        model: a `keras_attn.models.EncoderDecoderModel` (`Transformer`,
            `ImageCaptioner`).
        inputs: what `model.encode` takes, batched.
        start_token_id: the token every target starts with.
        end_token_id: the token that ends a sequence, or None.
        max_length: length of the returned sequences, start token included.
        sampler: `"greedy"`, `"beam"`, `"top_k"`, `"top_p"`, `"random"` or a
            `keras_hub.samplers.Sampler` instance (e.g. `BeamSampler(num_beams=4)`).
        use_cache: decode with key/value caches (fast) or recompute the whole
            prefix at every step (the reference the cache is tested against).

    Returns:
        Integer tensor `(batch, max_length)`, starting with `start_token_id`.

    Example:
    ```python
    tokens = keras_attn.generation.generate(
        model, source_token_ids, start_token_id=1, end_token_id=2, max_length=20
    )
    ```
    """
    start_token_id, end_token_id, max_length = _check_arguments(
        model, start_token_id, end_token_id, max_length
    )
    sampler = _get_sampler(sampler)
    with _without_gradients():
        return _generate(
            model, inputs, start_token_id, end_token_id, max_length, sampler, use_cache
        )


def _without_gradients():
    """`torch.no_grad()` on torch, where the loop runs eagerly: with gradients on,
    every step's caches would hold the autograd graph of all the steps before, so
    memory and per-token time would grow with the tokens generated."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def _generate(
    model, inputs, start_token_id, end_token_id, max_length, sampler, use_cache
):
    # `encode` checks the inputs (the source's token ids where they are known).
    encoder_sequence, encoder_padding_mask = model.encode(inputs, training=False)
    batch_size = ops.shape(encoder_sequence)[0]
    prompt = ops.full((batch_size, max_length), model.padding_id, dtype="int32")
    start = ops.full((batch_size, 1), start_token_id, dtype="int32")
    prompt = ops.slice_update(prompt, (0, 0), start)
    given = ops.arange(max_length)[None, :] < 1  # only the start token is given
    given = ops.broadcast_to(given, (batch_size, max_length))

    if use_cache:
        cache = model.initialize_caches(
            encoder_sequence, encoder_padding_mask, max_length
        )
        next_logits = _cached_next(model)
    else:
        cache = (
            encoder_sequence,
            _padding_mask_or_ones(encoder_sequence, encoder_padding_mask),
        )
        next_logits = _uncached_next(model)

    tokens = sampler(
        next_logits,
        prompt,
        cache=cache,
        index=1,
        mask=given,
        stop_token_ids=None if end_token_id is None else (end_token_id,),
        model=model,
    )
    if end_token_id is None:
        return tokens
    return _pad_after_end(tokens, end_token_id, model.padding_id)


def _cached_next(model):
    def next_logits(prompt, cache, index):
        previous = ops.slice(prompt, (0, index - 1), (ops.shape(prompt)[0], 1))
        # `_decode`, not `decode`: the sampler chose these ids from the logits,
        # so checking them would only copy them to the host at every step.
        logits, cache = model._decode(
            previous, None, caches=cache, start_index=index - 1, training=False
        )  # (B, 1, V)
        return _never_padding(logits[:, 0], model.padding_id), None, cache

    return next_logits


def _uncached_next(model):
    def next_logits(prompt, cache, index):
        encoder_sequence, encoder_padding_mask = cache
        logits, _ = model._decode(
            prompt, encoder_sequence, encoder_padding_mask, training=False
        )  # (B, T, V); ids chosen by the sampler, unchecked as above
        batch, _, vocabulary = ops.shape(logits)
        logits = ops.slice(logits, (0, index - 1, 0), (batch, 1, vocabulary))
        return _never_padding(logits[:, 0], model.padding_id), None, cache

    return next_logits


def _never_padding(logits, padding_id):
    """Forbid the padding token: it would be masked out of later steps."""
    vocabulary = ops.shape(logits)[-1]
    is_padding = ops.arange(vocabulary) == padding_id
    return ops.where(is_padding[None, :], -1e9, ops.cast(logits, "float32"))


def _padding_mask_or_ones(encoder_sequence, encoder_padding_mask):
    if encoder_padding_mask is not None:
        return encoder_padding_mask
    return ops.ones(ops.shape(encoder_sequence)[:2], dtype="bool")


def _pad_after_end(tokens, end_token_id, padding_id):
    """Replace every token after the first end token with padding."""
    is_end = ops.cast(tokens == end_token_id, "int32")
    ends_before = ops.cumsum(is_end, axis=1) - is_end  # end tokens strictly before
    return ops.where(ends_before > 0, padding_id, tokens)


def _get_sampler(sampler):
    from keras_hub import samplers  # the `hub` extra; imported only to generate

    if isinstance(sampler, samplers.Sampler):
        return sampler
    expected = "a keras_hub.samplers.Sampler or one of " + ", ".join(
        map(repr, _SAMPLER_NAMES)
    )
    if not isinstance(sampler, str) or sampler not in _SAMPLER_NAMES:
        _checks.fail(_OWNER, "sampler", sampler, expected)
    return samplers.get(sampler)


def _check_arguments(model, start_token_id, end_token_id, max_length):
    """`(start_token_id, end_token_id, max_length)` as Python ints (or None)."""
    vocabulary_size, padding_id = model.decoder_vocabulary_size, model.padding_id
    start_token_id = _checks.check_token_id(
        _OWNER, "start_token_id", start_token_id, vocabulary_size, padding_id
    )
    if end_token_id is not None:
        end_token_id = _checks.check_token_id(
            _OWNER, "end_token_id", end_token_id, vocabulary_size, padding_id
        )
    max_length = _checks.check_int_at_least(
        _OWNER,
        "max_length",
        max_length,
        2,
        " (the start token and at least one generated token)",
    )
    return start_token_id, end_token_id, max_length
