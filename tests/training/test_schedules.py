import keras
import numpy as np
import pytest

from keras_attn.training import TransformerSchedule
from tests._keras_private import TestCase


def paper_rate(step_num, hidden_dim, warmup_steps, scale=1.0):
    """Section 5.3, with the paper's 1-based step_num, in float64."""
    return scale * hidden_dim**-0.5 * min(step_num**-0.5, step_num * warmup_steps**-1.5)


def rate(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


class TransformerScheduleTest(TestCase):
    def test_matches_paper_formula_with_step_counted_from_one(self):
        schedule = TransformerSchedule(512, warmup_steps=4000)
        for step in (0, 1, 10, 999, 3998, 3999, 4000, 10_000, 100_000):
            expected = paper_rate(step + 1, 512, 4000)
            self.assertAllClose(rate(schedule, step), expected, rtol=1e-6)

    def test_first_rate_is_finite_and_nonzero(self):
        first = rate(TransformerSchedule(512, warmup_steps=4000), 0)
        self.assertAllClose(first, 512**-0.5 * 4000**-1.5, rtol=1e-6)

    def test_peak_is_at_the_warmup_steps_th_update(self):
        schedule = TransformerSchedule(64, warmup_steps=50, scale=2.0)
        rates = keras.ops.convert_to_numpy(schedule(np.arange(200)))
        self.assertEqual(int(np.argmax(rates)), 49)
        self.assertAllClose(rates[49], 2.0 * 64**-0.5 * 50**-0.5, rtol=1e-6)
        self.assertTrue(np.all(np.diff(rates[:50]) > 0))
        self.assertTrue(np.all(np.diff(rates[49:]) < 0))

    def test_scale_multiplies_the_rate(self):
        one = rate(TransformerSchedule(128, warmup_steps=10), 20)
        self.assertAllClose(rate(TransformerSchedule(128, 10, scale=0.5), 20), one / 2)

    def test_tensor_steps_give_float32(self):
        schedule = TransformerSchedule(32, warmup_steps=10)
        for dtype in ("int32", "float32"):  # TF optimizers count in int64: see fit
            value = schedule(keras.ops.convert_to_tensor(7, dtype))
            self.assertEqual(keras.backend.standardize_dtype(value.dtype), "float32")
            self.assertAllClose(value, paper_rate(8, 32, 10), rtol=1e-6)

    def test_drives_sgd_inside_compiled_fit(self):
        # loss = |100 - w|, so each SGD update adds exactly the learning rate to w.
        model = keras.Sequential(
            [keras.Input((1,)), keras.layers.Dense(1, use_bias=False)]
        )
        model.layers[0].kernel.assign(np.zeros((1, 1), "float32"))
        schedule = TransformerSchedule(16, warmup_steps=4, scale=3.0)
        model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mae")
        x, y = np.ones((2, 1), "float32"), np.full((2, 1), 100.0, "float32")
        model.fit(x, y, batch_size=1, epochs=1, shuffle=False, verbose=0)
        expected = paper_rate(1, 16, 4, 3.0) + paper_rate(2, 16, 4, 3.0)
        kernel = keras.ops.convert_to_numpy(model.layers[0].kernel)
        self.assertAllClose(kernel, [[expected]], rtol=1e-5)
        self.assertEqual(int(model.optimizer.iterations), 2)
        learning_rate = keras.ops.convert_to_numpy(model.optimizer.learning_rate)
        self.assertAllClose(learning_rate, paper_rate(3, 16, 4, 3.0), rtol=1e-6)

    def test_drives_adam_apply_gradients(self):
        variable = keras.Variable(np.zeros(3, "float32"))
        optimizer = keras.optimizers.Adam(TransformerSchedule(16, warmup_steps=4))
        gradient = keras.ops.ones((3,), "float32")
        optimizer.apply_gradients([(gradient, variable)])
        # Adam's first step moves every weight by about the learning rate.
        expected = np.full(3, -paper_rate(1, 16, 4))
        self.assertAllClose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-4)

    def test_serialization_round_trip(self):
        schedule = TransformerSchedule(256, warmup_steps=100, scale=0.5)
        serialized = keras.saving.serialize_keras_object(schedule)
        self.assertEqual(
            serialized["registered_name"], "keras_attn>TransformerSchedule"
        )
        restored = keras.saving.deserialize_keras_object(serialized)
        self.assertIsInstance(restored, TransformerSchedule)
        self.assertEqual(restored.get_config(), schedule.get_config())
        self.assertAllClose(rate(restored, 42), rate(schedule, 42))

    def test_config_keys_are_constructor_arguments(self):
        config = TransformerSchedule(8).get_config()
        self.assertEqual(set(config), {"hidden_dim", "warmup_steps", "scale"})

    def test_optimizer_config_round_trip(self):
        optimizer = keras.optimizers.Adam(TransformerSchedule(64, warmup_steps=20))
        serialized = optimizer.get_config()["learning_rate"]
        self.assertEqual(
            serialized["registered_name"], "keras_attn>TransformerSchedule"
        )
        # `from_config` deserializes the schedule in place: hand it a fresh config.
        restored = keras.optimizers.Adam.from_config(optimizer.get_config())
        self.assertEqual(restored.get_config()["learning_rate"], serialized)
        self.assertAllClose(restored.learning_rate, paper_rate(1, 64, 20), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"hidden_dim": 8.0}, "hidden_dim"),
        ({"hidden_dim": 8, "warmup_steps": 0}, "warmup_steps"),
        ({"hidden_dim": 8, "scale": -1.0}, "scale"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, argument):
    with pytest.raises(ValueError, match=f"TransformerSchedule.*`{argument}`"):
        TransformerSchedule(**kwargs)
