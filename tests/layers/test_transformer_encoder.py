"""TransformerEncoder: Keras' layer harness, keras-hub parity, a NumPy reference.

(Validation shared with the decoder is tested once for both, in
test_transformer_blocks.py.)

Padded query rows. With an explicit `padding_mask`, ours and keras-hub both mask keys
only, so every row (padded queries too) agrees. With a Keras mask (`mask_zero=True`)
the query mask is also used: a padded query row then has every key masked, and our
attention core returns zeros for it (DESIGN.md) where `keras.layers.MultiHeadAttention`
(inside keras-hub) returns a uniform average over all keys. Those rows are padding, so
the parity tests compare real tokens only.
"""

import keras
import keras_hub
import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_attn.layers.transformer_encoder import TransformerEncoder
from tests._keras_private import TestCase
from tests._keras_private import get_keras_mask

HIDDEN, HEADS, FFN = 8, 4, 16
PADDING_MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)  # (B, T)


def random_sequence(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def copy_weights_by_path(ours, theirs):
    """Assign keras-hub's weights to ours by variable path, without the layer name.

    The build orders differ, so `set_weights` would pair the wrong variables;
    keras-hub's encoder calls its attention `self_attention_layer`.
    """

    def key(variable):
        path = variable.path.split("/", 1)[1]
        return path.replace("self_attention_layer/", "self_attention/")

    by_path = {key(w): w for w in theirs.weights}
    for w in ours.weights:
        w.assign(by_path[key(w)])


def encoder_pair(**kwargs):
    """Our encoder and keras-hub's, built on `(2, 5, HIDDEN)`, with equal weights."""
    ours = TransformerEncoder(FFN, HEADS, **kwargs)
    theirs = keras_hub.layers.TransformerEncoder(FFN, HEADS, **kwargs)
    ours.build((2, 5, HIDDEN))
    theirs.build((2, 5, HIDDEN))
    copy_weights_by_path(ours, theirs)
    return ours, theirs


def numpy_layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(-1, keepdims=True)
    variance = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def numpy_post_ln_encoder(x, weights, padding_mask, num_heads, epsilon=1e-5):
    """One post-LN encoder block in float64, from the layer's weights by path.

    LN(h + FFN(h)) with h = LN(x + MHA(x)), MHA = concat_i softmax(Q_i K_iᵀ/√d) V_i W^O.
    """
    w = {k: np.asarray(v, "float64") for k, v in weights.items()}
    x = x.astype("float64")
    q = np.einsum("btd,dnh->btnh", x, w["query/kernel"]) + w["query/bias"]
    k = np.einsum("btd,dnh->btnh", x, w["key/kernel"]) + w["key/bias"]
    v = np.einsum("btd,dnh->btnh", x, w["value/kernel"]) + w["value/bias"]
    head_dim = q.shape[-1]
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(head_dim)  # (B, H, T, S)
    logits = np.where(padding_mask[:, None, None, :], logits, -np.inf)
    weights_ = np.exp(logits - logits.max(-1, keepdims=True))
    weights_ /= weights_.sum(-1, keepdims=True)
    heads = np.einsum("bnts,bsnh->btnh", weights_, v)  # (B, T, H, Dh)
    attended = (
        np.einsum("btnh,nhd->btd", heads, w["attention_output/kernel"])
        + w["attention_output/bias"]
    )
    h = numpy_layer_norm(
        x + attended, w["attention_norm/gamma"], w["attention_norm/beta"], epsilon
    )
    inner = np.maximum(h @ w["intermediate/kernel"] + w["intermediate/bias"], 0.0)
    out = inner @ w["output/kernel"] + w["output/bias"]
    return numpy_layer_norm(h + out, w["ffn_norm/gamma"], w["ffn_norm/beta"], epsilon)


def reference_weights(encoder):
    """The encoder's weights under the short names `numpy_post_ln_encoder` uses."""
    rename = {
        "self_attention/": "",
        "self_attention_layer_norm/": "attention_norm/",
        "feedforward_layer_norm/": "ffn_norm/",
        "feedforward_intermediate_dense/": "intermediate/",
        "feedforward_output_dense/": "output/",
    }
    weights = {}
    for w in encoder.weights:
        path = w.path.split("/", 1)[1]
        for prefix, short in rename.items():
            if path.startswith(prefix):
                weights[short + path[len(prefix) :]] = ops.convert_to_numpy(w)
                break
    return weights


class TransformerEncoderTest(TestCase):
    def test_layer_behaviour_pre_ln_with_grouped_query_attention(self):
        self.run_layer_test(
            TransformerEncoder,
            init_kwargs={
                "intermediate_dim": FFN,
                "num_heads": HEADS,
                "num_key_value_heads": 2,
                "normalize_first": True,
            },
            input_shape=(2, 5, HIDDEN),
            expected_output_shape=(2, 5, HIDDEN),
            expected_num_trainable_weights=16,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,  # the attention's; Dropout(0.0) has none
            supports_masking=True,
            # Training is checked above and by `model.fit` in the decoder tests;
            # skipping it here saves a JAX compile of another training step.
            run_training_check=False,
        )

    @parameterized.named_parameters(("post_ln", False), ("pre_ln", True))
    def test_matches_keras_hub_with_padding_mask(self, normalize_first):
        ours, theirs = encoder_pair(normalize_first=normalize_first)
        x = random_sequence((2, 5, HIDDEN))
        expected = theirs(x, padding_mask=PADDING_MASK)
        # Both mask padded keys only, so padded query rows agree as well.
        self.assertAllClose(ours(x, padding_mask=PADDING_MASK), expected, atol=1e-5)

    def test_matches_keras_hub_without_mask(self):
        ours, theirs = encoder_pair()
        x = random_sequence((2, 5, HIDDEN))
        self.assertAllClose(ours(x), theirs(x), atol=1e-5)

    def test_matches_keras_hub_with_attention_mask(self):
        ours, theirs = encoder_pair(normalize_first=True)
        x = random_sequence((2, 5, HIDDEN))
        rng = np.random.default_rng(1)
        attention_mask = rng.random((2, 5, 5)) < 0.7
        attention_mask[:, np.arange(5), np.arange(5)] = True  # no empty row
        expected = theirs(x, padding_mask=PADDING_MASK, attention_mask=attention_mask)
        self.assertAllClose(
            ours(x, padding_mask=PADDING_MASK, attention_mask=attention_mask),
            expected,
            atol=1e-5,
        )

    @parameterized.named_parameters(("post_ln", False), ("pre_ln", True))
    def test_matches_keras_hub_with_gelu_and_layer_norm_epsilon(self, normalize_first):
        ours, theirs = encoder_pair(
            activation="gelu", layer_norm_epsilon=0.5, normalize_first=normalize_first
        )
        x = random_sequence((2, 5, HIDDEN))
        self.assertAllClose(
            ours(x, padding_mask=PADDING_MASK),
            theirs(x, padding_mask=PADDING_MASK),
            atol=1e-5,
        )

    def test_keras_mask_matches_keras_hub_at_real_tokens(self):
        ours, theirs = encoder_pair()
        tokens = np.array([[4, 2, 7, 0, 0], [3, 9, 1, 5, 6]])
        embedding = keras.layers.Embedding(10, HIDDEN, mask_zero=True)
        real = tokens != 0
        actual = ops.convert_to_numpy(ours(embedding(tokens)))
        expected = ops.convert_to_numpy(theirs(embedding(tokens)))
        # Padded query rows differ by design (zeros vs. uniform average, see top).
        self.assertAllClose(actual[real], expected[real], atol=1e-5)

    def test_post_ln_matches_numpy_reference(self):
        encoder = TransformerEncoder(FFN, HEADS)
        x = random_sequence((2, 5, HIDDEN))
        actual = encoder(x, padding_mask=PADDING_MASK)
        expected = numpy_post_ln_encoder(
            x, reference_weights(encoder), PADDING_MASK, HEADS
        )
        self.assertAllClose(actual, expected, atol=1e-5)

    def test_keras_mask_from_embedding_reaches_the_output(self):
        tokens = np.array([[4, 2, 7, 0, 0], [3, 9, 1, 5, 0]])
        x = keras.layers.Embedding(10, HIDDEN, mask_zero=True)(tokens)
        outputs = TransformerEncoder(FFN, HEADS)(x)
        self.assertAllEqual(get_keras_mask(outputs), tokens != 0)

    def test_global_average_pooling_after_encoder_skips_padding(self):
        tokens = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(10, HIDDEN, mask_zero=True)(tokens)
        encoded = TransformerEncoder(FFN, HEADS)(x)
        pooled = keras.layers.GlobalAveragePooling1D()(encoded)
        model = keras.Model(tokens, [encoded, pooled])
        data = np.array([[4, 2, 7, 0, 0], [3, 9, 1, 5, 0]])
        encoded, pooled = (ops.convert_to_numpy(t) for t in model(data))
        real = (data != 0)[..., None]
        expected = (encoded * real).sum(1) / real.sum(1)
        self.assertAllClose(pooled, expected, atol=1e-5)

    def test_extra_padding_tokens_do_not_change_real_token_outputs(self):
        embedding = keras.layers.Embedding(10, HIDDEN, mask_zero=True)
        encoder = TransformerEncoder(FFN, HEADS, normalize_first=True)
        short = np.array([[4, 2, 7, 0, 0], [3, 9, 1, 5, 6]])
        long = np.pad(short, ((0, 0), (0, 3)))
        short_out = ops.convert_to_numpy(encoder(embedding(short)))
        long_out = ops.convert_to_numpy(encoder(embedding(long)))
        real = short != 0
        self.assertAllClose(long_out[:, :5][real], short_out[real], atol=1e-5)

    def test_attention_scores_rows_sum_to_one_and_skip_padded_keys(self):
        encoder = TransformerEncoder(FFN, HEADS)
        x = random_sequence((2, 5, HIDDEN))
        outputs, scores = encoder(
            x, padding_mask=PADDING_MASK, return_attention_scores=True
        )
        scores = ops.convert_to_numpy(scores)
        self.assertEqual(scores.shape, (2, HEADS, 5, 5))
        self.assertAllClose(outputs, encoder(x, padding_mask=PADDING_MASK))
        row_sums = scores.sum(-1).transpose(0, 2, 1)  # (B, T, H)
        self.assertAllClose(row_sums[PADDING_MASK], np.ones((8, HEADS)), atol=1e-5)
        padded_keys = np.broadcast_to(~PADDING_MASK[:, None, None, :], scores.shape)
        self.assertAllEqual(scores[padded_keys], np.zeros(padded_keys.sum()))

    def test_attention_scores_symbolic_shape(self):
        inputs = keras.Input((6, HIDDEN))
        outputs, scores = TransformerEncoder(FFN, HEADS)(
            inputs, return_attention_scores=True
        )
        self.assertEqual(outputs.shape, (None, 6, HIDDEN))
        self.assertEqual(scores.shape, (None, HEADS, 6, 6))

    def test_inference_ignores_dropout_rate(self):
        with_dropout = TransformerEncoder(FFN, HEADS, dropout=0.5)
        without = TransformerEncoder(FFN, HEADS)
        x = random_sequence((2, 5, HIDDEN))
        with_dropout.build(x.shape)
        without.build(x.shape)
        without.set_weights(with_dropout.get_weights())
        self.assertAllClose(with_dropout(x, training=False), without(x), atol=1e-6)
