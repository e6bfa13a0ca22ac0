import os

import keras
import numpy as np

from keras_attn.training import MaskedAccuracy
from keras_attn.training import MaskedSparseCategoricalCrossentropy
from keras_attn.training import SequenceExactMatch
from keras_attn.training import TransformerSchedule
from tests._keras_private import TestCase

VOCAB, LENGTH = 11, 6


def token_data(count=8, seed=0):
    """Inputs and next-token labels with 0-padding at the end of every row."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCAB, size=(count, LENGTH + 1)).astype("int32")
    lengths = rng.integers(2, LENGTH + 1, size=count)
    tokens[np.arange(LENGTH + 1)[None, :] > lengths[:, None]] = 0
    return tokens[:, :-1], tokens[:, 1:]


def tagger(mask_zero=False):
    """A per-token classifier; with `mask_zero` its logits carry a Keras mask."""
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 8, mask_zero=mask_zero)(inputs)
    logits = keras.layers.Dense(VOCAB)(keras.layers.Dense(8, activation="relu")(x))
    return keras.Model(inputs, logits)


def compile_for_translation(model):
    model.compile(
        optimizer=keras.optimizers.Adam(
            TransformerSchedule(8, warmup_steps=4), beta_2=0.98, epsilon=1e-9
        ),
        loss=MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
        metrics=[MaskedAccuracy(), SequenceExactMatch()],
    )


class TrainingLoopTest(TestCase):
    def test_fit_two_steps_then_save_and_load_without_custom_objects(self):
        x, y = token_data()
        model = tagger()
        compile_for_translation(model)
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        for key in ("loss", "masked_accuracy", "sequence_exact_match"):
            self.assertTrue(np.isfinite(history.history[key][0]), key)
        self.assertEqual(int(model.optimizer.iterations), 2)

        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)  # registered: no custom_objects
        self.assertIsInstance(restored.loss, MaskedSparseCategoricalCrossentropy)
        self.assertEqual(restored.loss.get_config(), model.loss.get_config())
        self.assertEqual(
            restored.optimizer.get_config()["learning_rate"],
            model.optimizer.get_config()["learning_rate"],
        )
        self.assertEqual(int(restored.optimizer.iterations), 2)
        logits = model.predict(x, verbose=0)
        self.assertAllClose(restored.predict(x, verbose=0), logits)
        # The restored compile state (loss and both metrics) evaluates as before.
        results = restored.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
        self.assertAllClose(results["loss"], model.loss(y, logits), rtol=1e-5)
        for metric in (MaskedAccuracy(), SequenceExactMatch()):
            metric.update_state(y, logits)
            self.assertAllClose(results[metric.name], metric.result(), rtol=1e-6)

    def test_compiled_loss_equals_direct_call_when_logits_carry_a_mask(self):
        # The Embedding mask reaches the logits; the reduction must combine it with
        # the label mask once, not scale by the count of real tokens twice.
        x, y = token_data()
        model = tagger(mask_zero=True)
        compile_for_translation(model)
        results = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
        logits = model.predict(x, verbose=0)
        direct = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)(y, logits)
        self.assertAllClose(results["loss"], direct, rtol=1e-5)
        accuracy = MaskedAccuracy()
        accuracy.update_state(y, logits)
        self.assertAllClose(results["masked_accuracy"], accuracy.result(), rtol=1e-6)
