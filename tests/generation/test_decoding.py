import functools
import os
from unittest import mock

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras_hub import samplers

from keras_attn.generation import _compiled
from keras_attn.generation import generate
from keras_attn.models import Transformer
from tests import _tiny_models
from tests._keras_private import TestCase
from tests._tiny_models import END_ID
from tests._tiny_models import PADDING_ID
from tests._tiny_models import START_ID

BATCH, SOURCE_LENGTH, MAX_LENGTH = 3, 5, 7
# Tiny on purpose: on JAX every `generate` call traces and compiles its loop.
SMALL = {"vocabulary_size": 9, "num_layers": 1, "dropout": 0.0}
VOCABULARY_SIZE = SMALL["vocabulary_size"]


def small_model(**overrides):
    return _tiny_models.tiny_transformer(**{**SMALL, **overrides})


def shared_model():
    """The session's generation model, for the tests that do not change it."""
    return _tiny_models.shared(Transformer, **SMALL)


def random_source(batch=BATCH, seed=0):
    """Real tokens (ids 3 and up); the last source is shorter (padded)."""
    source = _tiny_models.random_tokens(batch, SOURCE_LENGTH, VOCABULARY_SIZE, seed)
    source[-1, 3:] = PADDING_ID
    return source


def generate_numpy(model, source, **kwargs):
    kwargs = {"start_token_id": START_ID, "max_length": MAX_LENGTH, **kwargs}
    return keras.ops.convert_to_numpy(generate(model, source, **kwargs))


def cached_and_uncached(model, source, make_sampler=lambda: "greedy", **kwargs):
    """Both decodings, each with a fresh sampler (a seeded one restarts its draws)."""
    return tuple(
        generate_numpy(
            model, source, sampler=make_sampler(), use_cache=use_cache, **kwargs
        )
        for use_cache in (True, False)
    )


@functools.cache
def sampled_tokens():
    """Tokens drawn at random (temperature 1) from an untrained model.

    Its distribution is close to uniform, so some sequences end early and the
    padding token would be drawn often if `generate` did not forbid it. Shared by
    the tests of the output's layout.
    """
    source = random_source(batch=6)
    return generate_numpy(
        shared_model(),
        source,
        end_token_id=END_ID,
        max_length=10,
        sampler=samplers.RandomSampler(seed=3),
    )


def model_that_always_ends():
    """A model whose every position predicts `END_ID`, by construction.

    The decoder block (post-LN) ends in a layer norm; with a zero scale its
    output is its offset, set to the end token's (enlarged) embedding. The tied
    output projection then gives the end token the largest logit everywhere.
    """
    model = small_model()
    embeddings = model.decoder_token_embedding.embeddings
    table = keras.ops.convert_to_numpy(embeddings)
    table[END_ID] *= 10.0
    embeddings.assign(table)
    norm = model.get_layer("decoder_layer_0").feedforward_layer_norm
    norm.gamma.assign(np.zeros(norm.gamma.shape, "float32"))
    norm.beta.assign(table[END_ID])
    return model


class CachedDecodingTest(TestCase, parameterized.TestCase):
    def test_cached_greedy_equals_uncached(self):
        # No end token: every position is generated.
        cached, uncached = cached_and_uncached(shared_model(), random_source())
        np.testing.assert_array_equal(cached, uncached)
        self.assertFalse(np.any(cached == PADDING_ID))

    def test_cached_beam_search_equals_uncached(self):
        cached, uncached = cached_and_uncached(
            shared_model(),
            random_source(),
            lambda: samplers.BeamSampler(num_beams=3),
            end_token_id=END_ID,
        )
        self.assertEqual(cached.shape, (BATCH, MAX_LENGTH))
        np.testing.assert_array_equal(cached, uncached)

    @parameterized.named_parameters(
        ("top_k", lambda: samplers.TopKSampler(k=5, seed=1)),
        ("top_p", lambda: samplers.TopPSampler(p=0.9, seed=1)),
    )
    def test_cached_sampling_equals_uncached_with_the_same_seed(self, make_sampler):
        cached, uncached = cached_and_uncached(
            shared_model(), random_source(), make_sampler, end_token_id=END_ID
        )
        np.testing.assert_array_equal(cached, uncached)


class GeneratedTokensTest(TestCase):
    def test_output_is_batch_by_max_length_integers(self):
        tokens = sampled_tokens()
        self.assertEqual(tokens.shape, (6, 10))
        self.assertTrue(np.issubdtype(tokens.dtype, np.integer))
        self.assertTrue(np.all((tokens >= 0) & (tokens < VOCABULARY_SIZE)))

    def test_every_sequence_starts_with_the_start_token(self):
        np.testing.assert_array_equal(sampled_tokens()[:, 0], START_ID)

    def test_tokens_after_the_first_end_token_are_padding(self):
        tokens = sampled_tokens()
        ended_early = 0
        for row in tokens:
            ends = np.flatnonzero(row == END_ID)
            if ends.size:
                np.testing.assert_array_equal(row[ends[0] + 1 :], PADDING_ID)
                ended_early += ends[0] < len(row) - 1
        self.assertGreater(ended_early, 0, f"no sequence ended early:\n{tokens}")

    def test_padding_is_never_generated(self):
        for row in sampled_tokens():
            ends = np.flatnonzero(row == END_ID)
            generated = row[: ends[0] + 1] if ends.size else row
            self.assertNotIn(PADDING_ID, generated)

    def test_generation_stops_at_the_end_token(self):
        tokens = generate_numpy(
            model_that_always_ends(), random_source(), end_token_id=END_ID
        )
        expected = np.full((BATCH, MAX_LENGTH), PADDING_ID)
        expected[:, 0], expected[:, 1] = START_ID, END_ID
        np.testing.assert_array_equal(tokens, expected)

    @pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="tf.function is TensorFlow's graph mode",
    )
    def test_generate_runs_inside_tf_function(self):
        import tensorflow as tf

        model, source = shared_model(), random_source()
        kwargs = {"start_token_id": START_ID, "end_token_id": END_ID, "max_length": 6}
        # Unknown batch size and source length, as in a serving signature.
        graph_generate = tf.function(
            lambda source: generate(model, source, **kwargs),
            input_signature=[tf.TensorSpec((None, None), tf.int32)],
        )
        np.testing.assert_array_equal(
            graph_generate(tf.constant(source)).numpy(),
            generate(model, source, **kwargs).numpy(),
        )

    @pytest.mark.skipif(
        keras.backend.backend() != "torch",
        reason="only torch records gradients of eager calls without being asked "
        "(TensorFlow needs a GradientTape, JAX a grad transform)",
    )
    def test_decoding_steps_keep_no_gradient_history_on_torch(self):
        import torch

        model = small_model()
        steps = []
        make_step = _compiled.step

        def recording_step(model, key, next_logits):
            step = make_step(model, key, next_logits)

            def recorded(prompt, cache, index):
                logits, hidden, cache = step(prompt, cache, index)
                tensors = [t for t in keras.tree.flatten(cache) if t is not None]
                steps.append((torch.is_grad_enabled(), logits.requires_grad, tensors))
                return logits, hidden, cache

            return recorded

        with mock.patch.object(_compiled, "step", recording_step):
            generate(model, random_source(), start_token_id=START_ID, max_length=5)
        self.assertLen(steps, 4)
        for grad_enabled, logits_need_grad, caches in steps:
            # Each step's caches would otherwise hold every earlier step's graph.
            self.assertFalse(grad_enabled)
            self.assertFalse(logits_need_grad)
            self.assertFalse(any(t.requires_grad for t in caches))


class GenerateArgumentsTest(TestCase, parameterized.TestCase):
    @parameterized.named_parameters(
        ("start_outside", "start_token_id", VOCABULARY_SIZE),
        ("start_negative", "start_token_id", -1),
        ("start_is_padding", "start_token_id", PADDING_ID),
        ("start_not_an_integer", "start_token_id", 1.0),
        ("start_is_a_bool", "start_token_id", True),  # True == START_ID
        ("end_outside", "end_token_id", VOCABULARY_SIZE + 3),
        ("end_is_padding", "end_token_id", PADDING_ID),
        ("max_length_1", "max_length", 1),
        ("max_length_not_an_integer", "max_length", 4.0),
        ("sampler", "sampler", "nucleus"),
    )
    def test_bad_arguments_fail_naming_generate(self, argument, value):
        kwargs = {"start_token_id": START_ID, "end_token_id": END_ID, argument: value}
        with pytest.raises(
            ValueError, match=rf"generate: argument `{argument}`.*received {value!r}"
        ):
            generate(shared_model(), random_source(), **kwargs)

    def test_numpy_integers_are_accepted_as_python_integers(self):
        arguments = {"start_token_id": START_ID, "end_token_id": END_ID}
        numpy_arguments = {name: np.int64(value) for name, value in arguments.items()}
        model, source = shared_model(), random_source()
        np.testing.assert_array_equal(
            generate_numpy(
                model, source, max_length=np.int32(MAX_LENGTH), **numpy_arguments
            ),
            generate_numpy(model, source, max_length=MAX_LENGTH, **arguments),
        )

    def test_source_ids_outside_the_vocabulary_fail_naming_them(self):
        source = random_source()
        source[2, 1] = VOCABULARY_SIZE
        with pytest.raises(
            ValueError,
            match=r"Transformer '.*': argument `encoder_token_ids` must hold token ids "
            r"in \[0, 9\) \(the vocabulary size is 9\); received the id 9 at index "
            r"\(2, 1\)",
        ):
            generate(shared_model(), source, start_token_id=START_ID, max_length=3)


@pytest.mark.skipif(
    not os.environ.get("KERAS_ATTN_SLOW_TESTS"),
    reason="trains for 320 steps (10-30 s of CPU, minutes on a busy machine); "
    "set KERAS_ATTN_SLOW_TESTS=1 to run",
)
class LearningTest(TestCase):
    def test_trained_model_reverses_held_out_sequences(self):
        # Reverse 5 tokens drawn from 10 (ids 3-12); targets end with END_ID.
        rng = np.random.default_rng(0)
        source = rng.integers(3, 13, size=(576, 5)).astype("int32")
        target = np.concatenate(
            [np.full((576, 1), START_ID), source[:, ::-1], np.full((576, 1), END_ID)],
            axis=1,
        ).astype("int32")  # (576, 7): start, 5 reversed tokens, end
        train, held_out = slice(0, 512), slice(512, None)
        model = Transformer(
            vocabulary_size=13,
            num_layers=2,
            hidden_dim=32,
            intermediate_dim=64,
            num_heads=4,
            dropout=0.0,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        inputs = {
            "encoder_token_ids": source[train],
            "decoder_token_ids": target[train, :-1],
        }
        model.fit(inputs, target[train, 1:], epochs=20, batch_size=32, verbose=0)
        generated = generate_numpy(
            model, source[held_out], end_token_id=END_ID, max_length=7
        )
        exact = np.mean(np.all(generated == target[held_out], axis=1))
        self.assertGreaterEqual(exact, 0.8, f"exact match {exact:.2f}")
