"""`generate` called eagerly compiles once per model and configuration.

The first call builds a program (`generation/_compiled.py`: the whole loop on
TensorFlow and JAX, the traced decoding step on torch) that later calls of the
same configuration and shapes reuse. The tokens are checked too: a reused
program sees the weights of the moment, and a new seeded sampler draws what it
draws in a model that never decoded.
"""

import keras
import numpy as np
from keras_hub import samplers

from keras_attn.generation import _compiled
from keras_attn.generation import generate
from tests import _tiny_models

VOCABULARY, MAX_LENGTH = 17, 9
PROMPTS = [[5, 6], [3, 4, 5, 6, 7]]


def language_model():
    model = _tiny_models.tiny_causal_lm(
        vocabulary_size=VOCABULARY, max_sequence_length=MAX_LENGTH
    )
    _tiny_models.randomize(model, scale=0.5)
    return model


def fresh_copy(model):
    """The same weights in a model that has never decoded: no programs."""
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def tokens(model, **kwargs):
    kwargs = {"max_length": MAX_LENGTH, **kwargs}
    return keras.ops.convert_to_numpy(generate(model, PROMPTS, **kwargs))


def programs(model):
    return model.__dict__.get(_compiled._PROGRAMS, {})


def test_a_second_call_reuses_the_program_of_the_first():
    model = language_model()
    first = tokens(model)
    np.testing.assert_array_equal(tokens(model), first)
    np.testing.assert_array_equal(tokens(model, sampler="greedy"), first)
    assert len(programs(model)) == 1
    tokens(model, use_cache=False)
    assert len(programs(model)) == 2


def test_a_program_sees_weights_assigned_after_it_was_built():
    model = language_model()
    before = tokens(model)
    _tiny_models.randomize(model, scale=0.5, seed=7)
    after = tokens(model)
    assert not np.array_equal(after, before)  # the new weights decode otherwise
    np.testing.assert_array_equal(after, tokens(fresh_copy(model)))


def test_a_new_seeded_sampler_draws_what_it_draws_alone():
    model = language_model()

    def sampled(model):
        return tokens(model, sampler=samplers.TopKSampler(k=5, seed=3))

    alone = sampled(fresh_copy(model))
    for _ in range(2):
        np.testing.assert_array_equal(sampled(model), alone)
    assert len(programs(model)) == 1


def test_one_sampler_continues_its_random_state_across_calls():
    model = language_model()
    sampler = samplers.RandomSampler(seed=11)
    reference = samplers.RandomSampler(seed=11)
    copy = fresh_copy(model)
    drawn = []
    for _ in range(2):
        drawn.append(tokens(model, sampler=sampler))
        np.testing.assert_array_equal(drawn[-1], tokens(copy, sampler=reference))
    assert not np.array_equal(drawn[0], drawn[1])  # the state moved on
    state = keras.ops.convert_to_numpy(sampler.variables[0].value)
    expected = keras.ops.convert_to_numpy(reference.variables[0].value)
    np.testing.assert_array_equal(state, expected)
