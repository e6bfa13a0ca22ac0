"""Autoregressive decoding of encoder–decoder and decoder-only models, cached or not.

The loop itself is a `keras_hub.samplers.Sampler` (greedy, beam, top-k, top-p, ...),
which runs `keras.ops.while_loop`, so decoding traces into one graph on TensorFlow
and JAX. We supply the `next` function: the logits of the token at `index` given the
tokens before it. The cached `next` feeds only the newest token and updates the
per-layer key/value caches; the uncached one re-runs the decoder on the whole prefix.
Both see the same tokens at the same positions, so they choose the same tokens.
An encoder–decoder target starts from the start token after the encoded source; a
`CausalLM` continues its prompts in place (`prompts.py`).
"""

import contextlib

import keras
from keras import ops

from keras_attn import _checks
from keras_attn.generation import _compiled
from keras_attn.generation import prompts
from keras_attn.models.causal_lm import CausalLM

_OWNER = "generate"
_SAMPLER_NAMES = ("greedy", "beam", "top_k", "top_p", "random")


def generate(
    model,
    inputs,
    *,
    start_token_id=None,
    end_token_id=None,
    max_length=32,
    sampler="greedy",
    use_cache=True,
):
    """Generate tokens from an encoder–decoder model or a language model.

    - Encoder–decoder (`Transformer`, `ImageCaptioner`): the source is encoded
      once; the decoder runs from `start_token_id`.
    - `CausalLM`: every prompt is continued in place: row `i` returns its prompt
      followed by the generated tokens. A batch of prompts of different lengths
      gives each the tokens it would get alone.

    Decoding stops when every sequence has generated `end_token_id` or
    `max_length` tokens exist. The padding token is never generated; positions
    after a sequence's first generated end token hold the padding id (the end
    token, for a model without one).

    Called eagerly, the first call of a model with a configuration (cache or
    not, end token, sampler) compiles: the whole decoding loop with XLA on
    TensorFlow, a `jax.jit` program on JAX, the decoding step as a traced graph on
    torch. Later calls of the same shapes reuse it and see the model's current
    weights. Inside a `tf.function` or `jax.jit` of your own, `generate` is
    traced into it instead.

    Args:
        model: a `keras_attn.models.EncoderDecoderModel` or `CausalLM`.
        inputs: encoder–decoder: what `model.encode` takes, batched. `CausalLM`:
            the prompts, a list of token-id lists of any lengths, or an integer
            `(B, P)` array or tensor right-padded with `model.padding_id`
            (every entry is a prompt token when the model has no padding id).
        start_token_id: the token every target starts with (required for
            encoder–decoder models); for a `CausalLM`, an optional token put
            before every prompt.
        end_token_id: the token that ends a sequence, or None.
        max_length: length of the returned sequences, prompts (or start token)
            included; no prompt may be longer.
        sampler: `"greedy"`, `"beam"`, `"top_k"`, `"top_p"`, `"random"` or a
            `keras_hub.samplers.Sampler` instance (e.g. `BeamSampler(num_beams=4)`).
        use_cache: decode with key/value caches (ring buffers for windowed
            layers; fast) or recompute the whole prefix at every step (the
            reference the cache is tested against).

    Returns:
        Integer tensor `(batch, max_length)`.

    Example:
    ```python
    tokens = keras_attn.generation.generate(
        model, source_token_ids, start_token_id=1, end_token_id=2, max_length=20
    )
    continued = keras_attn.generation.generate(
        language_model, [[5, 9, 3], [7]], end_token_id=2, max_length=16
    )
    ```
    """
    start_token_id, end_token_id, max_length = check_arguments(
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
    if isinstance(model, CausalLM):
        prompt, given, cache, next_logits = _language_model_start(
            model, inputs, start_token_id, max_length, use_cache
        )
    else:
        prompt, given, cache, next_logits = _encoder_decoder_start(
            model, inputs, start_token_id, max_length, use_cache
        )
    fill = end_token_id if model.padding_id is None else model.padding_id
    # The keys: what the step and the loop depend on besides their arguments,
    # the weights and the sampler.
    next_logits = _compiled.step(model, use_cache, next_logits)

    def loop(prompt, given, cache):
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
        return _fill_after_end(tokens, given, end_token_id, fill)

    key = (use_cache, end_token_id)
    return _compiled.run(model, key, loop, sampler, prompt, given, cache)


def _encoder_decoder_start(model, inputs, start_token_id, max_length, use_cache):
    """`(prompt, given, cache, next_logits)`: targets start with the start token."""
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
        return prompt, given, cache, _cached_next(model)
    cache = (
        encoder_sequence,
        _padding_mask_or_ones(encoder_sequence, encoder_padding_mask),
    )
    return prompt, given, cache, _uncached_next(model)


def _language_model_start(model, inputs, start_token_id, max_length, use_cache):
    """`(prompt, given, cache, next_logits)`: each prompt continued in place.

    Decoding starts at position 1 for every row and feeds the prompt token by
    token (the sampler keeps the given ones), so cached steps fill the caches,
    ring buffers included, exactly as a one-row decoding would.
    """
    prompt, given = prompts.prompt_batch(
        _OWNER, inputs, max_length, model.padding_id, start_token_id
    )
    # Only the prompts' own tokens are checked: the fill may be outside a
    # vocabulary that has no padding token.
    _checks.check_token_ids(
        _OWNER, "inputs", ops.where(given, prompt, 0), model.vocabulary_size
    )
    if not use_cache:
        return prompt, given, (), _uncached_language_model_next(model)
    cache = model.initialize_caches(ops.shape(prompt)[0], max_length)
    return prompt, given, cache, _cached_next(model)


def _uncached_language_model_next(model):
    def next_logits(prompt, cache, index):
        # Causal: the fill after `index` does not reach the logits at `index - 1`.
        logits, _ = model._decode(prompt, training=False)  # (B, T, V)
        batch, _, vocabulary = ops.shape(logits)
        logits = ops.slice(logits, (0, index - 1, 0), (batch, 1, vocabulary))
        return _never_padding(logits[:, 0], model.padding_id), None, cache

    return next_logits


def _cached_next(model):
    def next_logits(prompt, cache, index):
        previous = ops.slice(prompt, (0, index - 1), (ops.shape(prompt)[0], 1))
        # `_decode`, not `decode`: the sampler chose these ids from the logits,
        # so checking them would only copy them to the host at every step.
        logits, cache = model._decode(
            previous, caches=cache, start_index=index - 1, training=False
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
    logits = ops.cast(logits, "float32")
    if padding_id is None:
        return logits
    vocabulary = ops.shape(logits)[-1]
    is_padding = ops.arange(vocabulary) == padding_id
    return ops.where(is_padding[None, :], -1e9, logits)


def _padding_mask_or_ones(encoder_sequence, encoder_padding_mask):
    if encoder_padding_mask is not None:
        return encoder_padding_mask
    return ops.ones(ops.shape(encoder_sequence)[:2], dtype="bool")


def _fill_after_end(tokens, given, end_token_id, fill):
    """Replace every token after the first generated end token with `fill`."""
    is_end = ops.cast((tokens == end_token_id) & ~given, "int32")
    ends_before = ops.cumsum(is_end, axis=1) - is_end  # end tokens strictly before
    return ops.where(ends_before > 0, fill, tokens)


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


def check_arguments(model, start_token_id, end_token_id, max_length, owner=_OWNER):
    """`(start_token_id, end_token_id, max_length)` as Python ints (or None).

    `export_saved_model` checks its `generate` options with it before tracing,
    naming itself as `owner`.
    """
    language_model = isinstance(model, CausalLM)
    if language_model:
        vocabulary_size = model.vocabulary_size
    else:
        vocabulary_size = model.decoder_vocabulary_size
    padding_id = model.padding_id
    if start_token_id is not None or not language_model:
        start_token_id = _checks.check_token_id(
            owner, "start_token_id", start_token_id, vocabulary_size, padding_id
        )
    if end_token_id is not None:
        end_token_id = _checks.check_token_id(
            owner, "end_token_id", end_token_id, vocabulary_size, padding_id
        )
    max_length = _checks.check_int_at_least(
        owner,
        "max_length",
        max_length,
        2,
        " (the start token and at least one generated token)",
    )
    return start_token_id, end_token_id, max_length
