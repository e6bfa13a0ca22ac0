import inspect
import os
import re

import keras
import numpy as np
import pytest
from absl.testing import parameterized

from keras_attn.models import Transformer
from keras_attn.models import transformer_preset
from tests import _tiny_models
from tests._keras_private import TestCase
from tests._tiny_models import PADDING_ID
from tests._tiny_models import build_without_allocating

SMALL = _tiny_models.TRANSFORMER
VOCABULARY_SIZE = SMALL["vocabulary_size"]
INPUT_NAMES = ("encoder_token_ids", "decoder_token_ids")
small_model = _tiny_models.tiny_transformer


def shared_model(**overrides):
    """The session's tiny Transformer, for the tests that do not change it."""
    return _tiny_models.shared(Transformer, **overrides)


def random_tokens(batch, length, seed=0):
    return _tiny_models.random_tokens(batch, length, VOCABULARY_SIZE, seed)


def source_and_target(padded=False):
    """Sources `(2, 5)` and targets `(2, 4)`; the tests share these shapes because
    JAX compiles every eager op once per shape."""
    source, target = random_tokens(2, 5), random_tokens(2, 4, seed=1)
    if padded:
        source[1, 3:] = PADDING_ID  # a shorter second source
    return source, target


def another_token(tokens):
    """A different real token in place of each of `tokens`."""
    return 3 + (tokens - 3 + 1) % (VOCABULARY_SIZE - 3)


def pad(tokens, extra):
    padding = np.full((tokens.shape[0], extra), PADDING_ID, dtype="int32")
    return np.concatenate([tokens, padding], axis=1)


def logits(model, source, target):
    outputs = model(dict(zip(INPUT_NAMES, (source, target))))
    return keras.ops.convert_to_numpy(outputs)


def paper_parameter_count(vocabulary_size, num_layers, hidden_dim, intermediate_dim):
    """Parameters of the paper's Transformer with one shared, tied embedding."""
    d, f = hidden_dim, intermediate_dim
    attention = 4 * (d * d + d)  # query, key, value, output projections
    feedforward = d * f + f + f * d + d
    norm = 2 * d
    encoder_layer = attention + feedforward + 2 * norm
    decoder_layer = 2 * attention + feedforward + 3 * norm
    return vocabulary_size * d + num_layers * (encoder_layer + decoder_layer)


class TransformerPresetTest(TestCase, parameterized.TestCase):
    @parameterized.named_parameters(
        # Table 3 of the paper: 65M (base) and 213M (big) parameters with a
        # shared 37,000-token vocabulary. The variables are never allocated.
        ("base", "base", 65e6, (37000, 6, 512, 2048)),
        ("big", "big", 213e6, (37000, 6, 1024, 4096)),
    )
    def test_preset_has_the_papers_parameter_count(self, name, paper, sizes):
        model = build_without_allocating(lambda: transformer_preset(name))
        count = model.count_params()
        self.assertEqual(count, paper_parameter_count(*sizes))
        self.assertLess(abs(count - paper) / paper, 0.05)

    def test_preset_overrides_and_unknown_name(self):
        model = build_without_allocating(
            lambda: transformer_preset("base", vocabulary_size=20, num_layers=1)
        )
        self.assertEqual(model.hidden_dim, 512)
        self.assertEqual(model.num_layers, 1)
        self.assertEqual(model.vocabulary_size, 20)
        with pytest.raises(ValueError, match="transformer_preset.*`name`.*'huge'"):
            transformer_preset("huge")


class TransformerTest(TestCase, parameterized.TestCase):
    def test_logits_shape_and_dtype(self):
        model = shared_model()
        self.assertEqual(tuple(model.output.shape), (None, None, VOCABULARY_SIZE))
        outputs = logits(model, *source_and_target())
        self.assertEqual(outputs.shape, (2, 4, VOCABULARY_SIZE))
        self.assertEqual(outputs.dtype, np.float32)
        self.assertTrue(np.all(np.isfinite(outputs)))

    def test_dtype_policy_reaches_every_layer_and_survives_the_config(self):
        model = small_model(dtype="mixed_bfloat16", normalize_first=True)
        restored = Transformer.from_config(model.get_config())
        for layer in model.layers + restored.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            self.assertEqual(layer.dtype_policy.name, "mixed_bfloat16", layer.name)
        self.assertEqual(restored.dtype_policy.name, "mixed_bfloat16")
        self.assertEqual({weight.dtype for weight in model.weights}, {"float32"})

    def test_logits_are_float32_under_mixed_precision(self):
        model = small_model(dtype="mixed_bfloat16")
        outputs = model(dict(zip(INPUT_NAMES, source_and_target())))
        self.assertEqual(keras.backend.standardize_dtype(outputs.dtype), "float32")
        self.assertTrue(np.all(np.isfinite(keras.ops.convert_to_numpy(outputs))))

    def test_stable_layer_names(self):
        names = {layer.name for layer in shared_model().layers}
        expected = {
            "encoder_token_ids",
            "decoder_token_ids",
            "decoder_token_embedding",
            "encoder_position_embedding",
            "decoder_position_embedding",
            "encoder_layer_0",
            "encoder_layer_1",
            "decoder_layer_0",
            "decoder_layer_1",
        }
        self.assertEqual(expected - names, set())
        # Post-LN blocks end normalised: no final norms.
        self.assertNotIn("encoder_norm", names)
        self.assertNotIn("decoder_norm", names)

    def test_model_equals_encode_then_decode(self):
        model = shared_model()
        source, target = source_and_target(padded=True)
        encoded, mask = model.encode(source)
        expected, caches = model.decode(target, encoded, mask)
        self.assertIsNone(caches)
        self.assertAllClose(logits(model, source, target), expected, atol=1e-5)

    def test_appended_source_padding_leaves_logits_unchanged(self):
        model = shared_model()
        source, target = source_and_target(padded=True)
        target = pad(target, 3)  # the shape the target-padding test uses
        self.assertAllClose(
            logits(model, pad(source, 3), target),
            logits(model, source, target),
            atol=1e-5,
        )

    def test_appended_target_padding_leaves_real_positions_unchanged(self):
        model = shared_model()
        source, target = source_and_target(padded=True)
        padded = logits(model, source, pad(target, 3))
        self.assertEqual(padded.shape, (2, 7, VOCABULARY_SIZE))
        self.assertAllClose(padded[:, :4], logits(model, source, target), atol=1e-5)

    def test_decoder_is_causal(self):
        model = shared_model()
        source, target = source_and_target()
        changed = target.copy()
        changed[:, 2] = another_token(target[:, 2])
        before, after = logits(model, source, target), logits(model, source, changed)
        self.assertAllClose(after[:, :2], before[:, :2], atol=1e-5)
        self.assertGreater(np.abs(after[:, 2:] - before[:, 2:]).max(), 1e-2)

    def test_every_target_position_sees_the_source(self):
        model = shared_model()
        source, target = source_and_target()
        changed = source.copy()
        changed[:, -1] = another_token(source[:, -1])
        before, after = logits(model, source, target), logits(model, changed, target)
        self.assertGreater(np.abs(after - before).max(axis=(0, 2)).min(), 1e-2)

    def test_fit_lowers_the_loss(self):
        model = small_model(num_layers=1, dropout=0.0)
        source = random_tokens(32, 5)
        start = np.ones((32, 1), dtype="int32")
        inputs = {
            "encoder_token_ids": source,
            "decoder_token_ids": np.concatenate([start, source[:, :-1]], axis=1),
        }
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(inputs, source, epochs=6, batch_size=16, verbose=0)
        losses = history.history["loss"]
        self.assertLess(losses[-1], 0.8 * losses[0])

    def test_keras_file_round_trip_gives_identical_outputs(self):
        model = shared_model(normalize_first=True)  # dropout 0.1: off in calls
        source, target = source_and_target(padded=True)
        path = os.path.join(self.get_temp_dir(), "transformer.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        self.assertIsInstance(restored, Transformer)
        self.assertEqual(restored.get_config(), model.get_config())
        np.testing.assert_array_equal(
            logits(restored, source, target), logits(model, source, target)
        )

    def test_config_keys_are_constructor_arguments(self):
        model = shared_model()
        parameters = set(inspect.signature(Transformer).parameters) - {"kwargs"}
        config = model.get_config()
        self.assertEqual(set(config) - {"name", "trainable", "dtype"}, parameters)
        self.assertEqual(Transformer.from_config(config).get_config(), config)

    def test_pre_layer_norm_variant_adds_final_norms(self):
        model = shared_model(normalize_first=True)
        names = {layer.name for layer in model.layers}
        self.assertIn("encoder_norm", names)
        self.assertIn("decoder_norm", names)
        self.assertTrue(model.get_layer("decoder_layer_0").normalize_first)
        outputs = logits(model, *source_and_target(padded=True))
        self.assertEqual(outputs.shape, (2, 4, VOCABULARY_SIZE))
        self.assertTrue(np.all(np.isfinite(outputs)))

    def test_final_norm_adds_final_norms_to_post_layer_norm_stacks(self):
        # As in torch.nn.Transformer, whose post-LN stacks end with a norm too.
        model = small_model(final_norm=True)
        names = {layer.name for layer in model.layers}
        self.assertIn("encoder_norm", names)
        self.assertIn("decoder_norm", names)
        self.assertFalse(model.get_layer("decoder_layer_0").normalize_first)
        restored = Transformer.from_config(model.get_config())
        self.assertIn("decoder_norm", {layer.name for layer in restored.layers})
        pre_ln = small_model(normalize_first=True, final_norm=False)
        self.assertNotIn("encoder_norm", {layer.name for layer in pre_ln.layers})

    def test_separate_embeddings_allow_a_different_target_vocabulary(self):
        model = shared_model(share_embeddings=False, target_vocabulary_size=7)
        self.assertIsNot(model.encoder_token_embedding, model.decoder_token_embedding)
        self.assertEqual(model.decoder_vocabulary_size, 7)
        shared = shared_model()
        self.assertEqual(
            model.count_params() - shared.count_params(),
            7 * SMALL["hidden_dim"],  # 11- and 7-row tables instead of one 11-row
        )
        source, target = source_and_target()
        outputs = logits(model, source, np.minimum(target, 6))
        self.assertEqual(outputs.shape, (2, 4, 7))

    def test_shared_embeddings_need_equal_vocabularies(self):
        with pytest.raises(
            ValueError, match="Transformer.*`target_vocabulary_size`.*received 7"
        ):
            small_model(target_vocabulary_size=7)

    def test_untied_output_embeddings_add_an_output_projection(self):
        model = small_model(tie_output_embeddings=False)
        self.assertEqual(
            model.count_params() - shared_model().count_params(),
            SMALL["hidden_dim"] * VOCABULARY_SIZE,
        )
        outputs = logits(model, *source_and_target())
        self.assertEqual(outputs.shape, (2, 4, VOCABULARY_SIZE))

    @parameterized.named_parameters(
        ("vocabulary_size", {"vocabulary_size": 0}, "`vocabulary_size`.*received 0"),
        ("num_layers", {"num_layers": 0}, "`num_layers`.*received 0"),
        ("num_heads", {"hidden_dim": 15}, "`hidden_dim`.*num_heads.*received 15"),
        ("padding_id", {"padding_id": 11}, "`padding_id`.*received 11"),
        ("padding_id_negative", {"padding_id": -1}, "`padding_id`.*received -1"),
        # A bool is not a token id (ImageCaptioner refused it, Transformer did not).
        ("padding_id_bool", {"padding_id": True}, "`padding_id`.*received True"),
        ("target_vocabulary", {"target_vocabulary_size": -3}, "`target_vocab.*-3"),
        ("num_heads_zero", {"num_heads": 0}, "`num_heads`.*received 0"),
        ("dropout", {"dropout": 1.5}, "`dropout`.*received 1.5"),
        ("intermediate_dim", {"intermediate_dim": 0}, "`intermediate_dim`.*0"),
    )
    def test_bad_arguments_fail_naming_the_model(self, overrides, message):
        with pytest.raises(ValueError, match=f"Transformer.*{message}"):
            small_model(**overrides)


class TransformerTokenIdsTest(TestCase, parameterized.TestCase):
    """Ids outside the vocabulary: an `IndexError` on torch and silently clipped
    on JAX without these checks. Concrete (eager) inputs only."""

    @parameterized.named_parameters(
        ("source_too_large", "encoder_token_ids", (0, 1), VOCABULARY_SIZE),
        ("source_negative", "encoder_token_ids", (1, 0), -1),
        ("target_too_large", "decoder_token_ids", (1, 2), VOCABULARY_SIZE + 4),
    )
    def test_eager_call_names_the_argument_the_id_and_the_vocabulary(
        self, argument, index, token_id
    ):
        inputs = dict(zip(INPUT_NAMES, source_and_target()))
        inputs[argument][index] = token_id
        with pytest.raises(
            ValueError,
            match=rf"Transformer '.*': argument `{argument}` must hold token ids in "
            rf"\[0, 11\) \(the vocabulary size is 11\); received the id "
            rf"{token_id} at index {re.escape(str(index))}",
        ):
            shared_model()(inputs)

    def test_encode_and_decode_check_their_token_ids(self):
        model = shared_model()
        source, target = source_and_target()
        source[0, 0] = target[0, 0] = VOCABULARY_SIZE
        with pytest.raises(ValueError, match=r"`encoder_token_ids`.*id 11 at"):
            model.encode(source)
        encoded, mask = model.encode(source % VOCABULARY_SIZE)
        with pytest.raises(ValueError, match=r"`token_ids`.*id 11 at index \(0, 0"):
            model.decode(target, encoded, mask)

    def test_target_ids_are_checked_against_the_target_vocabulary(self):
        model = shared_model(share_embeddings=False, target_vocabulary_size=7)
        source, target = source_and_target()
        target[0, 0] = 7  # a source token, not a target token
        with pytest.raises(ValueError, match=r"`decoder_token_ids`.*\[0, 7\).*id 7"):
            logits(model, source, target)

    def test_inputs_must_be_the_dict_of_both_token_ids(self):
        source, _ = source_and_target()
        with pytest.raises(ValueError, match=r"Transformer.*`inputs`.*dict with keys"):
            shared_model()({"encoder_token_ids": source})
        with pytest.raises(ValueError, match=r"`decoder_token_ids`.*rank 2"):
            shared_model()(
                {"encoder_token_ids": source, "decoder_token_ids": source[0]}
            )


class TransformerCachedDecodingTest(TestCase, parameterized.TestCase):
    @parameterized.named_parameters(("post_ln", False), ("pre_ln", True))
    def test_cached_decoding_equals_full_decode(self, normalize_first):
        model = shared_model(normalize_first=normalize_first)
        # The second source is padded: the cached path must keep its mask.
        source, target = source_and_target(padded=True)
        encoded, mask = model.encode(source)
        full, _ = model.decode(target, encoded, mask)  # (2, 4, V)
        # Room for 7 tokens: the 3 never written must be masked out.
        caches = model.initialize_caches(encoded, mask, max_length=7)
        steps = []
        for index in range(4):
            # A tensor index, as `generate` passes it inside its loop.
            step, caches = model.decode(
                target[:, index : index + 1],
                None,
                caches=caches,
                start_index=keras.ops.convert_to_tensor(index, "int32"),
            )  # (2, 1, V)
            steps.append(keras.ops.convert_to_numpy(step))
        self.assertAllClose(np.concatenate(steps, axis=1), full, atol=1e-5)
