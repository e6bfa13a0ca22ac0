"""TransformerDecoder: Keras' layer harness, keras-hub parity, cached decoding.

(Validation shared with the encoder is tested once for both, in
test_transformer_blocks.py.)

Padded query rows. Ours and keras-hub mask padded keys only, so with right padding
every row agrees. With left padding the first rows have every key masked (causal and
padding together): our attention core returns zeros there (DESIGN.md), keras-hub a
uniform average over all keys, future ones included. Those rows are padding, so the
left-padding parity test compares real tokens only.
"""

import inspect
import os
from unittest import mock

import keras
import keras_hub
import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_attn.layers.transformer_decoder import TransformerDecoder
from keras_attn.layers.transformer_encoder import TransformerEncoder
from tests._keras_private import TestCase
from tests._keras_private import get_keras_mask
from tests._keras_private import set_keras_mask

HIDDEN, HEADS, FFN = 8, 4, 16
T, S = 5, 3
DECODER_PADDING = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)  # (B, T)
ENCODER_PADDING = np.array([[1, 1, 0], [1, 1, 1]], dtype=bool)  # (B, S)
VOCAB = 12


def random_sequence(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def padded_encoder_call(decoder, **arguments):
    """`decoder` on random decoder and encoder sequences, the encoder sequence
    padded as `ENCODER_PADDING`."""
    x = random_sequence((2, T, HIDDEN))
    source = random_sequence((2, S, HIDDEN), seed=1)
    return decoder(x, source, encoder_padding_mask=ENCODER_PADDING, **arguments)


def copy_weights_by_path(ours, theirs):
    """Assign keras-hub's weights to ours by variable path, without the layer name.

    keras-hub builds the feed-forward layer norm last, we build it first, so
    `set_weights` would pair the wrong variables.
    """
    by_path = {w.path.split("/", 1)[1]: w for w in theirs.weights}
    for w in ours.weights:
        w.assign(by_path[w.path.split("/", 1)[1]])


def decoder_pair(with_encoder, **kwargs):
    """Our decoder and keras-hub's, built alike, with equal weights."""
    ours = TransformerDecoder(FFN, HEADS, **kwargs)
    theirs = keras_hub.layers.TransformerDecoder(FFN, HEADS, **kwargs)
    encoder_shape = (2, S, HIDDEN) if with_encoder else None
    ours.build((2, T, HIDDEN), encoder_shape)
    theirs.build((2, T, HIDDEN), encoder_shape)
    copy_weights_by_path(ours, theirs)
    return ours, theirs


def decode_with_cache(decoder, x, encoder_output=None, prefill=1):
    """Run `x` (B, T, F) through `decoder` with a KV cache.

    The first `prefill` tokens go in one call at index 0, then one token a call.
    """
    batch, length = x.shape[0], x.shape[1]
    self_cache = decoder.initialize_cache(batch, length)
    cross_cache = None
    if encoder_output is not None:
        cross_cache = decoder.precompute_cross_attention_cache(encoder_output)
    steps = [(0, prefill)] + [(i, i + 1) for i in range(prefill, length)]
    outputs = []
    for start, end in steps:
        results = decoder(
            x[:, start:end],
            self_attention_cache=self_cache,
            self_attention_cache_update_index=start,
            cross_attention_cache=cross_cache,
        )
        outputs.append(results[0])
        self_cache = results[1]
    return ops.concatenate(outputs, axis=1)


def seq2seq_model():
    """Embedding → encoder → decoder with cross-attention → Dense, on token ids."""
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    encoded = keras.layers.Embedding(VOCAB, HIDDEN, mask_zero=True)(source)
    encoded = TransformerEncoder(FFN, HEADS)(encoded)
    decoded = keras.layers.Embedding(VOCAB, HIDDEN, mask_zero=True)(target)
    decoded = TransformerDecoder(FFN, HEADS, num_key_value_heads=1)(decoded, encoded)
    logits = keras.layers.Dense(VOCAB)(decoded)
    return keras.Model([source, target], logits)


def token_batch(seed=0):
    rng = np.random.default_rng(seed)
    source = rng.integers(1, VOCAB, size=(4, 6))
    target = rng.integers(1, VOCAB, size=(4, 5))
    source[:, 4:] = 0
    target[1:, 3:] = 0
    return source, target


class TransformerDecoderTest(TestCase):
    def test_layer_behaviour_pre_ln_with_encoder_sequence(self):
        self.run_layer_test(
            TransformerDecoder,
            init_kwargs={
                "intermediate_dim": FFN,
                "num_heads": HEADS,
                "dropout": 0.1,
                "normalize_first": True,
            },
            input_shape={
                "decoder_sequence_shape": (2, T, HIDDEN),
                "encoder_sequence_shape": (2, S, HIDDEN),
            },
            expected_output_shape=(2, T, HIDDEN),
            expected_num_trainable_weights=26,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=3,
            supports_masking=True,
            # The harness' training step calls `layer(inputs)` with the dict as
            # one positional argument; `test_fit_*` trains with cross-attention.
            run_training_check=False,
        )

    @parameterized.named_parameters(
        ("post_ln_decoder_only", False, False),
        ("pre_ln_decoder_only", True, False),
        ("post_ln_with_encoder", False, True),
        ("pre_ln_with_encoder", True, True),
    )
    def test_matches_keras_hub_with_padding_masks(self, normalize_first, with_encoder):
        ours, theirs = decoder_pair(with_encoder, normalize_first=normalize_first)
        x = random_sequence((2, T, HIDDEN))
        arguments = {"decoder_padding_mask": DECODER_PADDING}
        if with_encoder:
            arguments["encoder_sequence"] = random_sequence((2, S, HIDDEN), seed=1)
            arguments["encoder_padding_mask"] = ENCODER_PADDING
        expected = theirs(x, **arguments)
        self.assertAllClose(ours(x, **arguments), expected, atol=1e-5)

    def test_matches_keras_hub_without_masks(self):
        ours, theirs = decoder_pair(with_encoder=True)
        x = random_sequence((2, T, HIDDEN))
        source = random_sequence((2, S, HIDDEN), seed=1)
        self.assertAllClose(ours(x, source), theirs(x, source), atol=1e-5)

    @parameterized.named_parameters(("post_ln", False), ("pre_ln", True))
    def test_matches_keras_hub_with_gelu_and_layer_norm_epsilon(self, normalize_first):
        ours, theirs = decoder_pair(
            with_encoder=True,
            activation="gelu",
            layer_norm_epsilon=0.5,
            normalize_first=normalize_first,
        )
        x = random_sequence((2, T, HIDDEN))
        source = random_sequence((2, S, HIDDEN), seed=1)
        self.assertAllClose(
            ours(x, source, encoder_padding_mask=ENCODER_PADDING),
            theirs(x, source, encoder_padding_mask=ENCODER_PADDING),
            atol=1e-5,
        )

    def test_left_padding_matches_keras_hub_at_real_tokens(self):
        ours, theirs = decoder_pair(with_encoder=True)
        x = random_sequence((2, T, HIDDEN))
        source = random_sequence((2, S, HIDDEN), seed=1)
        left_padding = np.ascontiguousarray(DECODER_PADDING[:, ::-1])
        actual = ours(x, source, decoder_padding_mask=left_padding)
        expected = theirs(x, source, decoder_padding_mask=left_padding)
        # Rows with no visible key differ by design (zeros vs. uniform, see top).
        self.assertAllClose(
            ops.convert_to_numpy(actual)[left_padding],
            ops.convert_to_numpy(expected)[left_padding],
            atol=1e-5,
        )

    @parameterized.named_parameters(
        ("post_ln_decoder_only", False, False, None),
        ("pre_ln_decoder_only", True, False, None),
        ("post_ln_with_encoder", False, True, None),
        ("pre_ln_with_encoder", True, True, None),
        ("grouped_query_with_encoder", True, True, 2),
    )
    def test_cached_decoding_one_token_at_a_time_matches_full_pass(
        self, normalize_first, with_encoder, num_key_value_heads
    ):
        decoder = TransformerDecoder(
            FFN,
            HEADS,
            normalize_first=normalize_first,
            num_key_value_heads=num_key_value_heads,
        )
        x = random_sequence((2, T, HIDDEN))
        source = random_sequence((2, S, HIDDEN), seed=1) if with_encoder else None
        expected = decoder(x, source)
        self.assertAllClose(decode_with_cache(decoder, x, source), expected, atol=1e-5)

    def test_prefill_then_one_token_at_a_time_matches_full_pass(self):
        decoder = TransformerDecoder(FFN, HEADS, normalize_first=True)
        x = random_sequence((2, T, HIDDEN))
        source = random_sequence((2, S, HIDDEN), seed=1)
        expected = decoder(x, source)
        actual = decode_with_cache(decoder, x, source, prefill=3)
        self.assertAllClose(actual, expected, atol=1e-5)

    def test_cached_decoding_inside_while_loop_matches_full_pass(self):
        decoder = TransformerDecoder(FFN, HEADS)
        x = random_sequence((2, T, HIDDEN))
        source = random_sequence((2, S, HIDDEN), seed=1)
        expected = decoder(x, source)
        cross_cache = decoder.precompute_cross_attention_cache(source)

        def step(i, outputs, self_cache):
            token = ops.slice(x, (0, i, 0), (2, 1, HIDDEN))
            y, self_cache, _ = decoder(
                token,
                self_attention_cache=self_cache,
                self_attention_cache_update_index=i,
                cross_attention_cache=cross_cache,
            )
            return i + 1, ops.slice_update(outputs, (0, i, 0), y), self_cache

        _, actual, _ = ops.while_loop(
            lambda i, outputs, self_cache: i < T,
            step,
            (0, ops.zeros((2, T, HIDDEN)), decoder.initialize_cache(2, T)),
        )
        self.assertAllClose(actual, expected, atol=1e-5)

    def test_cached_decoder_only_returns_outputs_and_self_attention_cache(self):
        # As keras-hub's decoder does: no cross-attention, no cross cache.
        decoder = TransformerDecoder(FFN, HEADS)
        x = random_sequence((2, T, HIDDEN))
        decoder.build(x.shape)
        outputs, cache = decoder(
            x[:, :1],
            self_attention_cache=decoder.initialize_cache(2, T),
            self_attention_cache_update_index=0,
        )
        self.assertEqual(tuple(outputs.shape), (2, 1, HIDDEN))
        self.assertEqual(tuple(cache.shape), (2, 2, T, HEADS, HIDDEN // HEADS))
        # Post-LN: the self-attention projects the first token as it is.
        attention = decoder.self_attention
        self.assertAllClose(cache[:, 0, :1], attention.key(x[:, :1]), atol=1e-6)
        self.assertAllClose(cache[:, 1, :1], attention.value(x[:, :1]), atol=1e-6)
        self.assertAllEqual(cache[:, :, 1:], np.zeros((2, 2, T - 1, HEADS, 2)))

    def test_cached_call_with_cross_attention_returns_both_caches(self):
        decoder = TransformerDecoder(FFN, HEADS)
        x = random_sequence((2, T, HIDDEN))
        source = random_sequence((2, S, HIDDEN), seed=1)
        decoder.build(x.shape, source.shape)
        outputs, self_cache, cross_cache = decoder(
            x[:, :1],
            source,
            self_attention_cache=decoder.initialize_cache(2, T),
            self_attention_cache_update_index=0,
        )
        self.assertEqual(tuple(self_cache.shape), (2, 2, T, HEADS, HIDDEN // HEADS))
        # Computed from `encoder_sequence` once, returned for the next steps.
        self.assertAllClose(
            cross_cache, decoder.precompute_cross_attention_cache(source), atol=1e-6
        )

    def test_cached_cross_attention_gets_no_value(self):
        decoder = TransformerDecoder(FFN, HEADS)
        x = random_sequence((2, T, HIDDEN))
        source = random_sequence((2, S, HIDDEN), seed=1)
        decoder.build(x.shape, source.shape)
        cross_cache = decoder.precompute_cross_attention_cache(source)
        attention_call = type(decoder.cross_attention).call
        with mock.patch.object(
            type(decoder.cross_attention), "call", autospec=True
        ) as call:
            call.side_effect = attention_call
            decoder(x, cross_attention_cache=cross_cache)
        (cross_call,) = [
            c for c in call.call_args_list if c.args[0] is decoder.cross_attention
        ]
        arguments = (
            inspect.signature(attention_call)
            .bind(*cross_call.args, **cross_call.kwargs)
            .arguments
        )
        self.assertIsNone(arguments.get("value"))
        self.assertIs(arguments["cache"], cross_cache)

    def test_future_tokens_do_not_change_earlier_outputs(self):
        decoder = TransformerDecoder(FFN, HEADS)
        x = random_sequence((2, T, HIDDEN))
        changed = x.copy()
        changed[:, 3:] = random_sequence((2, T - 3, HIDDEN), seed=2)
        before = ops.convert_to_numpy(decoder(x))
        after = ops.convert_to_numpy(decoder(changed))
        self.assertAllClose(after[:, :3], before[:, :3], atol=1e-6)
        self.assertNotAllClose(after[:, 3:], before[:, 3:])

    def test_without_causal_mask_future_tokens_change_earlier_outputs(self):
        decoder = TransformerDecoder(FFN, HEADS)
        x = random_sequence((2, T, HIDDEN))
        changed = x.copy()
        changed[:, 3:] = random_sequence((2, T - 3, HIDDEN), seed=2)
        before = ops.convert_to_numpy(decoder(x, use_causal_mask=False))
        after = ops.convert_to_numpy(decoder(changed, use_causal_mask=False))
        self.assertNotAllClose(after[:, :3], before[:, :3])

    @parameterized.named_parameters(("decoder_only", False), ("with_encoder", True))
    def test_keras_mask_of_decoder_sequence_reaches_the_output(self, with_encoder):
        decoder = TransformerDecoder(FFN, HEADS)
        x = ops.convert_to_tensor(random_sequence((2, T, HIDDEN)))
        mask = ops.convert_to_tensor(DECODER_PADDING)
        set_keras_mask(x, mask)
        source = random_sequence((2, S, HIDDEN), seed=1) if with_encoder else None
        self.assertAllEqual(get_keras_mask(decoder(x, source)), DECODER_PADDING)

    def test_padded_encoder_positions_do_not_change_outputs(self):
        decoder = TransformerDecoder(FFN, HEADS)
        x = random_sequence((2, T, HIDDEN))
        source = random_sequence((2, S, HIDDEN), seed=1)
        changed = np.where(ENCODER_PADDING[..., None], source, 100.0).astype("float32")
        outputs = []
        for sequence in (source, changed):
            sequence = ops.convert_to_tensor(sequence)
            set_keras_mask(sequence, ops.convert_to_tensor(ENCODER_PADDING))
            outputs.append(decoder(x, sequence))
        self.assertAllClose(outputs[1], outputs[0], atol=1e-5)

    def test_left_padded_decoder_positions_do_not_change_real_token_outputs(self):
        decoder = TransformerDecoder(FFN, HEADS, normalize_first=True)
        left_padding = np.ascontiguousarray(DECODER_PADDING[:, ::-1])
        x = random_sequence((2, T, HIDDEN))
        changed = np.where(left_padding[..., None], x, 100.0).astype("float32")
        outputs = []
        for sequence in (x, changed):
            sequence = ops.convert_to_tensor(sequence)
            set_keras_mask(sequence, ops.convert_to_tensor(left_padding))
            outputs.append(ops.convert_to_numpy(decoder(sequence)))
        self.assertAllClose(
            outputs[1][left_padding], outputs[0][left_padding], atol=1e-5
        )

    def test_attention_scores_are_causal_and_rows_sum_to_one(self):
        decoder = TransformerDecoder(FFN, HEADS)
        outputs, self_scores, _ = padded_encoder_call(
            decoder, return_attention_scores=True
        )
        self_scores = ops.convert_to_numpy(self_scores)
        self.assertEqual(self_scores.shape, (2, HEADS, T, T))
        self.assertAllClose(outputs, padded_encoder_call(decoder))
        future = np.triu(np.ones((T, T), bool), k=1)
        self.assertAllEqual(
            self_scores[..., future], np.zeros((2, HEADS, future.sum()))
        )
        self.assertAllClose(self_scores.sum(-1), np.ones((2, HEADS, T)), atol=1e-5)

    def test_cross_attention_scores_skip_padded_encoder_keys(self):
        _, _, cross_scores = padded_encoder_call(
            TransformerDecoder(FFN, HEADS), return_attention_scores=True
        )
        cross_scores = ops.convert_to_numpy(cross_scores)
        self.assertEqual(cross_scores.shape, (2, HEADS, T, S))
        self.assertAllClose(cross_scores.sum(-1), np.ones((2, HEADS, T)), atol=1e-5)
        padded = np.broadcast_to(~ENCODER_PADDING[:, None, None, :], cross_scores.shape)
        self.assertAllEqual(cross_scores[padded], np.zeros(padded.sum()))

    def test_decoder_only_returns_self_attention_scores_only(self):
        decoder = TransformerDecoder(FFN, HEADS)
        outputs = decoder(random_sequence((2, T, HIDDEN)), return_attention_scores=True)
        self.assertLen(outputs, 2)
        self.assertEqual(tuple(outputs[1].shape), (2, HEADS, T, T))

    def test_attention_scores_symbolic_shapes(self):
        target = keras.Input((T, HIDDEN))
        source = keras.Input((S, HIDDEN))
        outputs, self_scores, cross_scores = TransformerDecoder(FFN, HEADS)(
            target, source, return_attention_scores=True
        )
        self.assertEqual(outputs.shape, (None, T, HIDDEN))
        self.assertEqual(self_scores.shape, (None, HEADS, T, T))
        self.assertEqual(cross_scores.shape, (None, HEADS, T, S))

    def test_rank_2_encoder_sequence_raises(self):
        with self.assertRaisesRegex(
            ValueError, r"TransformerDecoder.*`encoder_sequence`.*rank 3.*\(2, 8\)"
        ):
            TransformerDecoder(FFN, HEADS).build((2, T, HIDDEN), (2, HIDDEN))

    def test_encoder_sequence_without_cross_attention_raises(self):
        decoder = TransformerDecoder(FFN, HEADS)
        x = random_sequence((2, T, HIDDEN))
        decoder(x)
        with self.assertRaisesRegex(
            ValueError, r"TransformerDecoder.*`encoder_sequence`.*built without"
        ):
            decoder(x, random_sequence((2, S, HIDDEN)))

    def test_missing_encoder_sequence_with_cross_attention_raises(self):
        decoder = TransformerDecoder(FFN, HEADS)
        x = random_sequence((2, T, HIDDEN))
        decoder(x, random_sequence((2, S, HIDDEN)))
        with self.assertRaisesRegex(
            ValueError, r"TransformerDecoder.*`encoder_sequence`.*received None"
        ):
            decoder(x)

    def test_saved_model_gives_identical_outputs(self):
        model = seq2seq_model()
        inputs = list(token_batch())
        expected = model.predict(inputs, verbose=0)
        path = os.path.join(self.get_temp_dir(), "seq2seq.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        self.assertAllClose(restored.predict(inputs, verbose=0), expected, atol=1e-6)

    def test_fit_runs_and_loss_is_finite(self):
        model = seq2seq_model()
        model.compile(
            optimizer="sgd",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        source, target = token_batch()
        labels = np.roll(target, -1, axis=1)
        history = model.fit([source, target], labels, batch_size=2, verbose=0)
        self.assertLen(history.history["loss"], 1)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
