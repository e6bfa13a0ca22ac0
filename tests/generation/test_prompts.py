"""`generate` on a `CausalLM`: prompts of different lengths, continued in place.

The reference for a batch is each prompt decoded alone, and for cached decoding
the uncached one; both are independent of how the batch is padded.
"""

import functools

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras_hub import samplers

from keras_attn.generation import generate
from tests import _tiny_models
from tests._keras_private import TestCase

VOCABULARY, MAX_LENGTH, END_ID = 23, 24, 2
# Lengths 1, 5 and 17: shorter than, equal to and longer than the window of 3.
PROMPTS = [[5], [3, 4, 5, 6, 7], list(range(3, 20))]


@functools.cache
def language_model(sliding_window=None):
    """A tiny random CausalLM (padding id 0), windowed layers optional."""
    model = _tiny_models.tiny_causal_lm(
        vocabulary_size=VOCABULARY,
        max_sequence_length=MAX_LENGTH,
        sliding_window=sliding_window,
    )
    _tiny_models.randomize(model, scale=0.5)
    return model


_GREEDY = {}


def generate_numpy(model, prompts, **kwargs):
    """`generate` as NumPy. Greedy decodings of lists are computed once per
    session: on JAX each call compiles its loop, for seconds."""
    kwargs = {"max_length": MAX_LENGTH, **kwargs}
    if "sampler" in kwargs or not isinstance(prompts, list):
        return keras.ops.convert_to_numpy(generate(model, prompts, **kwargs))
    key = (id(model), repr(prompts), tuple(sorted(kwargs.items())))
    if key not in _GREEDY:
        _GREEDY[key] = keras.ops.convert_to_numpy(generate(model, prompts, **kwargs))
    return _GREEDY[key].copy()


def right_padded(prompts, width=MAX_LENGTH):
    rows = np.zeros((len(prompts), width), "int32")  # padding id 0
    for row, prompt in zip(rows, prompts):
        row[: len(prompt)] = prompt
    return rows


class BatchOfPromptsTest(TestCase, parameterized.TestCase):
    def test_batch_equals_each_prompt_alone(self):
        # A windowed layer (its ring cache wraps) and a global one.
        model = language_model((3, None))
        batch = generate_numpy(model, PROMPTS)
        for row, prompt in zip(batch, PROMPTS):
            alone = generate_numpy(model, [prompt])[0]
            np.testing.assert_array_equal(row, alone)

    def test_cached_equals_uncached(self):
        model = language_model((3, None))
        np.testing.assert_array_equal(
            generate_numpy(model, PROMPTS),
            generate_numpy(model, PROMPTS, use_cache=False),
        )

    def test_rows_are_the_prompts_then_the_generated_tokens(self):
        batch = generate_numpy(language_model(), PROMPTS)
        self.assertEqual(batch.shape, (3, MAX_LENGTH))
        for row, prompt in zip(batch, PROMPTS):
            np.testing.assert_array_equal(row[: len(prompt)], prompt)
            self.assertNotIn(0, row[len(prompt) :])  # padding is never generated
        # The untrained model continues different prompts differently.
        self.assertGreater(len({tuple(row[17:]) for row in batch}), 1)

    def test_greedy_tokens_are_the_argmax_of_the_uncached_logits(self):
        model = language_model()
        row = generate_numpy(model, [PROMPTS[1]])[0]
        logits = keras.ops.convert_to_numpy(model({"token_ids": row[None]}))[0]
        logits[:, 0] = -np.inf  # the padding id is never generated
        np.testing.assert_array_equal(
            row[len(PROMPTS[1]) :], np.argmax(logits, axis=-1)[len(PROMPTS[1]) - 1 : -1]
        )

    def test_right_padded_array_equals_the_list_of_lists(self):
        model = language_model()
        np.testing.assert_array_equal(
            generate_numpy(model, right_padded(PROMPTS, width=20)),
            generate_numpy(model, PROMPTS),
        )

    def test_start_token_is_put_before_every_prompt(self):
        model = language_model()
        with_start = generate_numpy(model, PROMPTS[:2], start_token_id=1)
        expected = generate_numpy(model, [[1] + p for p in PROMPTS[:2]])
        np.testing.assert_array_equal(with_start, expected)

    def test_sampling_with_a_seed_is_cached_equals_uncached(self):
        model = language_model((3, None))
        cached, uncached = (
            generate_numpy(
                model,
                PROMPTS,
                sampler=samplers.TopKSampler(k=4, seed=3),
                use_cache=use_cache,
            )
            for use_cache in (True, False)
        )
        np.testing.assert_array_equal(cached, uncached)

    def test_beam_search_keeps_the_prompts(self):
        batch = generate_numpy(
            language_model(), PROMPTS, sampler=samplers.BeamSampler(num_beams=2)
        )
        for row, prompt in zip(batch, PROMPTS):
            np.testing.assert_array_equal(row[: len(prompt)], prompt)


class EndTokenTest(TestCase):
    def test_tokens_after_the_first_generated_end_are_padding(self):
        model = language_model()
        free = generate_numpy(model, PROMPTS)
        # End on a token the first row generates, so that it does end early.
        end = int(free[0, 3])
        ended = generate_numpy(model, PROMPTS, end_token_id=end)
        for row, free_row, prompt in zip(ended, free, PROMPTS):
            generated = free_row[len(prompt) :]
            hits = np.flatnonzero(generated == end)
            stop = len(prompt) + (hits[0] + 1 if hits.size else len(generated))
            np.testing.assert_array_equal(row[:stop], free_row[:stop])
            np.testing.assert_array_equal(row[stop:], 0)

    def test_an_end_token_inside_a_prompt_does_not_end_it(self):
        model = language_model()
        prompt = [3, END_ID, 4]
        ended = generate_numpy(model, [prompt], end_token_id=END_ID, max_length=8)
        free = generate_numpy(model, [prompt], max_length=8)
        np.testing.assert_array_equal(ended[0, :4], free[0, :4])


class PromptArgumentsTest(TestCase, parameterized.TestCase):
    def test_prompt_longer_than_max_length_fails_naming_it(self):
        with pytest.raises(
            ValueError,
            match=r"generate: argument `inputs` holds prompt 2 of 17 tokens, "
            r"longer than `max_length`=16",
        ):
            generate(language_model(), PROMPTS, max_length=16)

    def test_empty_prompt_fails_naming_it(self):
        with pytest.raises(ValueError, match=r"`inputs`.*prompt 1 is empty"):
            generate(language_model(), [[3], []], max_length=8)

    @parameterized.named_parameters(
        ("floats", [[1.5, 2.0]]), ("nested", [[[3, 4]]]), ("none", [])
    )
    def test_prompts_that_are_not_token_lists_fail(self, prompts):
        with pytest.raises(ValueError, match=r"generate: argument `inputs`"):
            generate(language_model(), prompts, max_length=8)

    def test_prompt_ids_outside_the_vocabulary_fail(self):
        with pytest.raises(
            ValueError, match=r"`inputs` must hold token ids in \[0, 23\)"
        ):
            generate(language_model(), [[3, VOCABULARY]], max_length=8)

    def test_start_token_outside_the_vocabulary_fails(self):
        with pytest.raises(ValueError, match=r"`start_token_id`.*received 99"):
            generate(language_model(), [[3]], start_token_id=99, max_length=8)
