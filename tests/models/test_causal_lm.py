import inspect
import math
import os

import keras
import numpy as np
import pytest
from absl.testing import parameterized

from keras_attn.models import CausalLM
from keras_attn.models import causal_lm_preset
from keras_attn.models import gelu_approximate
from tests import _tiny_models
from tests._keras_private import TestCase
from tests._tiny_models import PADDING_ID
from tests._tiny_models import build_without_allocating

SMALL = _tiny_models.CAUSAL_LM
VOCABULARY_SIZE = SMALL["vocabulary_size"]
small_model = _tiny_models.tiny_causal_lm
# Float32 model against a float64 reference of a few dozen roundings.
TOLERANCE = 1e-5


def shared_model(**overrides):
    """The session's tiny CausalLM with random weights everywhere; do not change it."""
    return _tiny_models.shared(CausalLM, randomized=True, **overrides)


def tokens(seed=0, batch=2):
    """Real tokens `(batch, 6)`: the tests keep to this shape (JAX compiles each)."""
    return _tiny_models.random_tokens(batch, 6, VOCABULARY_SIZE, seed)


def logits(model, inputs):
    return keras.ops.convert_to_numpy(model(inputs))


# --- an independent NumPy forward pass, reading the weights by their paths ---


def numpy_logits(model, token_ids, padding_mask=None, segment_ids=None, positions=None):
    """The model's logits in float64 NumPy: embeddings, blocks, final norm, head."""
    config = model.get_config()
    weights = {
        w.path: np.asarray(keras.ops.convert_to_numpy(w), "float64")
        for w in model.weights
    }
    batch, length = token_ids.shape
    if positions is None:
        positions = np.broadcast_to(np.arange(length), (batch, length))
    if padding_mask is None:
        padding_mask = token_ids != config["padding_id"]
    if segment_ids is None:
        segment_ids = np.zeros((batch, length), "int32")
    x = weights["token_embedding/embeddings"][token_ids]  # (B, T, D)
    if config["position_embedding"] == "learned":
        x = x + weights["position_embedding/embeddings"][positions]
    elif config["position_embedding"] == "sinusoidal":
        x = x + sinusoids(positions, config["hidden_dim"])
    query, key = np.arange(length)[:, None], np.arange(length)[None, :]
    allowed = (
        (key <= query)[None]
        & padding_mask[:, None, :]
        & (segment_ids[:, :, None] == segment_ids[:, None, :])
    )  # (B, T, T)
    windows = config["sliding_window"]
    if not isinstance(windows, list):
        windows = [windows] * config["num_layers"]
    rotary = positions if config["position_embedding"] == "rotary" else None
    for i, window in enumerate(windows):
        mask = allowed if window is None else allowed & (query - key < window)[None]
        x = numpy_block(weights, f"decoder_layer_{i}/", config, x, mask, rotary)
    if config["normalize_first"]:
        x = layer_norm(weights, "decoder_norm/", x, config["layer_norm_epsilon"])
    if config["tie_output_embeddings"]:
        return x @ weights["token_embedding/embeddings"].T
    return x @ weights["token_embedding/reverse_embeddings"]


def numpy_block(weights, prefix, config, x, mask, rotary_positions):
    epsilon, pre_ln = config["layer_norm_epsilon"], config["normalize_first"]

    def norm(name, y):
        return layer_norm(weights, f"{prefix}{name}/", y, epsilon)

    h = norm("self_attention_layer_norm", x) if pre_ln else x
    a = numpy_attention(
        weights, f"{prefix}self_attention/", config, h, mask, rotary_positions
    )
    x = x + a if pre_ln else norm("self_attention_layer_norm", x + a)
    h = norm("feedforward_layer_norm", x) if pre_ln else x
    dense = f"{prefix}feedforward_intermediate_dense/"
    h = activation(config["activation"])(
        h @ weights[dense + "kernel"] + weights[dense + "bias"]
    )
    dense = f"{prefix}feedforward_output_dense/"
    f = h @ weights[dense + "kernel"] + weights[dense + "bias"]
    return x + f if pre_ln else norm("feedforward_layer_norm", x + f)


def numpy_attention(weights, prefix, config, x, mask, rotary_positions):
    """Grouped-query attention: query head `h` uses key/value head `h // group`."""
    heads = config["num_heads"]
    group = heads // (config["num_key_value_heads"] or heads)

    def project(name, y):
        return (
            np.einsum("btd,dhk->bthk", y, weights[f"{prefix}{name}/kernel"])
            + weights[f"{prefix}{name}/bias"]
        )

    q, k, v = project("query", x), project("key", x), project("value", x)
    if rotary_positions is not None:
        q, k = rotate(q, rotary_positions), rotate(k, rotary_positions)
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    scores = np.einsum("bthk,bshk->bhts", q, k) / math.sqrt(q.shape[-1])
    scores = np.where(mask[:, None], scores, -1e30)
    probabilities = np.exp(scores - scores.max(-1, keepdims=True)) * mask[:, None]
    total = probabilities.sum(-1, keepdims=True)
    probabilities = probabilities / np.maximum(total, 1e-300)  # all masked: zeros
    attended = np.einsum("bhts,bshk->bthk", probabilities, v)
    output = f"{prefix}attention_output/"
    return (
        np.einsum("bthk,hkd->btd", attended, weights[output + "kernel"])
        + weights[output + "bias"]
    )


def layer_norm(weights, prefix, x, epsilon):
    mean, variance = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    normalized = (x - mean) / np.sqrt(variance + epsilon)
    return normalized * weights[prefix + "gamma"] + weights[prefix + "beta"]


def frequencies(dim):
    return 10000.0 ** (-np.arange(0, dim, 2) / dim)  # (dim / 2,)


def sinusoids(positions, dim):
    """sin at features 2i, cos at 2i + 1, `(B, T, dim)`."""
    angles = positions[..., None] * frequencies(dim)
    return np.stack([np.sin(angles), np.cos(angles)], -1).reshape(*positions.shape, dim)


def rotate(x, positions):
    """Rotate-half RoPE of `x` `(B, T, H, Dk)` at `positions` `(B, T)`."""
    angles = positions[..., None] * frequencies(x.shape[-1])  # (B, T, Dk / 2)
    angles = np.concatenate([angles, angles], -1)[:, :, None, :]
    first, second = np.split(x, 2, axis=-1)
    return x * np.cos(angles) + np.concatenate([-second, first], -1) * np.sin(angles)


def activation(identifier):
    if identifier == "gelu":
        erf = np.vectorize(math.erf)
        return lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    assert identifier["config"] == "keras_attn>gelu_approximate", identifier
    return lambda x: (
        0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    )


# Pre-LN GQA with learned positions (the tiny default); rotary post-LN with a
# local and a global layer, untied; sinusoids with one window for both layers.
VARIANTS = {
    "learned": {},
    "rotary": dict(
        position_embedding="rotary",
        normalize_first=False,
        sliding_window=(2, None),
        tie_output_embeddings=False,
        activation=gelu_approximate,
    ),
    "sinusoidal": dict(position_embedding="sinusoidal", sliding_window=3),
}


class CausalLMReferenceTest(TestCase, parameterized.TestCase):
    @parameterized.named_parameters(*((name, name) for name in VARIANTS))
    def test_logits_equal_a_numpy_forward_pass(self, variant):
        model = shared_model(**VARIANTS[variant])
        token_ids = tokens()
        token_ids[1, [0, 3]] = PADDING_ID  # a first query that sees no key
        expected = numpy_logits(model, token_ids)
        outputs = logits(model, {"token_ids": token_ids})
        self.assertEqual(outputs.dtype, np.float32)
        self.assertAllClose(outputs, expected, atol=TOLERANCE, rtol=TOLERANCE)

    @parameterized.named_parameters(("learned", "learned"), ("rotary", "rotary"))
    def test_packed_rows_equal_a_numpy_forward_pass(self, variant):
        model = shared_model(packed_inputs=True, **VARIANTS[variant])
        inputs = packed_inputs()
        self.assertAllClose(
            logits(model, inputs),
            numpy_logits(model, **inputs),
            atol=TOLERANCE,
            rtol=TOLERANCE,
        )

    def test_gpt2_logits_equal_hugging_face(self):
        torch = pytest.importorskip("torch")
        transformers = pytest.importorskip("transformers")
        model = shared_model(
            num_key_value_heads=None, activation=gelu_approximate, padding_id=None
        )
        config = transformers.GPT2Config(
            vocab_size=VOCABULARY_SIZE,
            n_positions=SMALL["max_sequence_length"],
            n_embd=SMALL["hidden_dim"],
            n_layer=SMALL["num_layers"],
            n_head=SMALL["num_heads"],
            n_inner=SMALL["intermediate_dim"],
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
        reference = transformers.GPT2LMHeadModel(config).eval()
        with torch.no_grad():
            for name, value in gpt2_state(model).items():
                reference.state_dict()[name].copy_(torch.from_numpy(value))
        token_ids = tokens()
        token_ids[:, 2] = 0  # a real token in GPT-2 ("!"), not padding
        with torch.no_grad():
            expected = reference(torch.from_numpy(token_ids).long()).logits.numpy()
        self.assertAllClose(logits(model, token_ids), expected, atol=TOLERANCE)


def gpt2_state(model):
    """Hugging Face GPT-2 tensors from our weights (Conv1D kernels are (in, out))."""
    weights = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
    state = {
        "transformer.wte.weight": weights["token_embedding/embeddings"],
        "transformer.wpe.weight": weights["position_embedding/embeddings"],
        "transformer.ln_f.weight": weights["decoder_norm/gamma"],
        "transformer.ln_f.bias": weights["decoder_norm/beta"],
    }
    dim = SMALL["hidden_dim"]
    for i in range(SMALL["num_layers"]):
        ours, theirs = f"decoder_layer_{i}/", f"transformer.h.{i}."
        attention = ours + "self_attention/"
        state[theirs + "attn.c_attn.weight"] = np.concatenate(
            [
                weights[f"{attention}{n}/kernel"].reshape(dim, dim)
                for n in ("query", "key", "value")
            ],
            axis=1,
        )
        state[theirs + "attn.c_attn.bias"] = np.concatenate(
            [
                weights[f"{attention}{n}/bias"].reshape(dim)
                for n in ("query", "key", "value")
            ]
        )
        state[theirs + "attn.c_proj.weight"] = weights[
            attention + "attention_output/kernel"
        ].reshape(dim, dim)
        state[theirs + "attn.c_proj.bias"] = weights[
            attention + "attention_output/bias"
        ]
        for norm, name in (("self_attention", "ln_1"), ("feedforward", "ln_2")):
            state[f"{theirs}{name}.weight"] = weights[f"{ours}{norm}_layer_norm/gamma"]
            state[f"{theirs}{name}.bias"] = weights[f"{ours}{norm}_layer_norm/beta"]
        for dense, name in (("intermediate", "c_fc"), ("output", "c_proj")):
            path = f"{ours}feedforward_{dense}_dense/"
            state[f"{theirs}mlp.{name}.weight"] = weights[path + "kernel"]
            state[f"{theirs}mlp.{name}.bias"] = weights[path + "bias"]
    return state


def packed_inputs():
    """Two rows of two documents each: lengths 4 + 2 and 3 + 3."""
    return {
        "token_ids": tokens(seed=2),
        "segment_ids": np.array([[1, 1, 1, 1, 2, 2], [5, 5, 5, 7, 7, 7]], "int32"),
        "positions": np.array([[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 1, 2]], "int32"),
    }


class CausalLMPackingTest(TestCase, parameterized.TestCase):
    @parameterized.named_parameters(("learned", "learned"), ("rotary", "rotary"))
    def test_each_packed_document_has_the_logits_it_has_alone(self, variant):
        model = shared_model(packed_inputs=True, **VARIANTS[variant])
        inputs = packed_inputs()
        packed = logits(model, inputs)
        row = inputs["token_ids"]
        # Each document alone at the start of a row (what follows it is unseen).
        first = logits(model, {"token_ids": row})
        second = logits(
            model, {"token_ids": np.stack([np.roll(row[0], -4), np.roll(row[1], -3)])}
        )
        for got, alone in (
            (packed[0, :4], first[0, :4]),
            (packed[1, :3], first[1, :3]),
            (packed[0, 4:], second[0, :2]),
            (packed[1, 3:], second[1, :3]),
        ):
            self.assertAllClose(got, alone, atol=TOLERANCE)

    def test_segment_ids_need_a_model_with_packed_inputs(self):
        inputs = {"token_ids": tokens(), "segment_ids": packed_inputs()["segment_ids"]}
        with pytest.raises(
            ValueError,
            match=r"CausalLM '.*': argument `segment_ids` must be omitted: the "
            r"model was built with packed_inputs=False.*int32 and shape \(2, 6\)",
        ):
            shared_model()(inputs)
        with pytest.raises(ValueError, match=r"argument `positions` must be omitted"):
            shared_model()({"token_ids": tokens(), "positions": tokens()})

    def test_missing_packed_inputs_default_to_one_document(self):
        model = shared_model(packed_inputs=True)
        token_ids = tokens()
        expected = logits(shared_model(), token_ids)
        self.assertAllClose(logits(model, {"token_ids": token_ids}), expected)
        self.assertAllClose(logits(model, token_ids), expected)

    def test_positions_beyond_the_table_fail(self):
        inputs = packed_inputs()
        inputs["positions"][1, 5] = 8
        with pytest.raises(
            ValueError, match=r"`positions` must hold positions in \[0, 8\).*8 at"
        ):
            shared_model(packed_inputs=True)(inputs)


class CausalLMCachedDecodingTest(TestCase, parameterized.TestCase):
    @parameterized.named_parameters(
        *(
            (f"{variant}_{windows}", variant, window)
            for variant in ("learned", "sinusoidal", "rotary")
            for windows, window in (("no_window", None), ("windows", (2, 3)))
        )
    )
    def test_cached_decoding_equals_the_whole_sequence(self, variant, window):
        overrides = {"position_embedding": variant, "sliding_window": window}
        # Defaults left out: the default model is the session's shared one.
        overrides = {k: v for k, v in overrides.items() if v not in ("learned", None)}
        model = shared_model(**overrides)
        token_ids = tokens()
        full, caches = model.decode(token_ids)
        self.assertIsNone(caches)
        caches = model.initialize_caches(2, max_length=6)
        if window is not None:  # rings of 2 and 3 slots, which wrap
            self.assertEqual([c.shape[2] for c in caches], [2, 3])
        # A prompt of 3 tokens at once (more than a ring holds), then steps.
        prompt, caches = model.decode(token_ids[:, :3], caches)
        steps = [keras.ops.convert_to_numpy(prompt)]
        for index in range(3, 6):
            step, caches = model.decode(
                token_ids[:, index : index + 1],
                caches,
                start_index=keras.ops.convert_to_tensor(index, "int32"),
            )
            steps.append(keras.ops.convert_to_numpy(step))
        self.assertIsInstance(caches, list)
        self.assertAllClose(np.concatenate(steps, axis=1), full, atol=TOLERANCE)

    def test_uncached_decode_equals_the_model(self):
        model = shared_model()
        token_ids = tokens()
        token_ids[1, 4:] = PADDING_ID
        decoded, _ = model.decode(token_ids)
        self.assertAllClose(decoded, logits(model, token_ids), atol=TOLERANCE)

    def test_initialize_caches_checks_max_length(self):
        caches = shared_model().initialize_caches(3, 8)
        self.assertEqual([tuple(c.shape) for c in caches], [(3, 2, 8, 2, 4)] * 2)
        with pytest.raises(
            ValueError, match=r"`max_length` must be at most max_sequence_length \(8"
        ):
            shared_model().initialize_caches(3, 9)

    def test_decode_checks_token_ids(self):
        token_ids = tokens()
        token_ids[0, 1] = VOCABULARY_SIZE
        with pytest.raises(ValueError, match=r"`token_ids`.*id 11 at index \(0, 1\)"):
            shared_model().decode(token_ids)


class CausalLMTest(TestCase, parameterized.TestCase):
    def test_logits_shape_dtype_and_layer_names(self):
        model = shared_model()
        self.assertEqual(tuple(model.output.shape), (None, None, VOCABULARY_SIZE))
        names = {layer.name for layer in model.layers}
        expected = {
            "token_ids",
            "padding_mask",
            "token_embedding",
            "position_embedding",
            "embedding_dropout",
            "decoder_layer_0",
            "decoder_layer_1",
            "decoder_norm",
        }
        self.assertEqual(expected - names, set())
        post_ln = shared_model(normalize_first=False)
        self.assertNotIn("decoder_norm", {layer.name for layer in post_ln.layers})
        rotary = shared_model(position_embedding="rotary")
        self.assertNotIn("position_embedding", {layer.name for layer in rotary.layers})

    def test_symbolic_call_and_a_model_around_it(self):
        model = shared_model(packed_inputs=True)
        token_ids = keras.Input((6,), batch_size=2, dtype="int32")
        outputs = model({"token_ids": token_ids})  # the rest filled in
        self.assertEqual(tuple(outputs.shape), (2, 6, VOCABULARY_SIZE))
        self.assertEqual(keras.backend.standardize_dtype(outputs.dtype), "float32")
        outer = keras.Model(token_ids, outputs)
        self.assertAllClose(
            outer.predict(tokens(), verbose=0), logits(model, tokens()), atol=TOLERANCE
        )

    def test_a_token_sees_only_earlier_tokens(self):
        model = shared_model()
        token_ids = tokens()
        changed = token_ids.copy()
        changed[:, 3] = 3 + (token_ids[:, 3] - 2) % (VOCABULARY_SIZE - 3)
        before, after = logits(model, token_ids), logits(model, changed)
        self.assertAllClose(after[:, :3], before[:, :3], atol=TOLERANCE)
        self.assertGreater(np.abs(after[:, 3:] - before[:, 3:]).max(), 1e-2)

    def test_padding_mask_replaces_the_padding_id_mask(self):
        model = shared_model()
        token_ids = tokens()
        token_ids[:, 2] = PADDING_ID
        by_id = logits(model, token_ids)
        mask = (token_ids != PADDING_ID).astype("int32")  # 0/1 masks work too
        by_mask = logits(model, {"token_ids": token_ids, "padding_mask": mask})
        self.assertAllClose(by_mask, by_id)
        # Without a padding id, the same token is attended.
        unmasked = logits(shared_model(padding_id=None), token_ids)
        self.assertGreater(np.abs(unmasked[:, 3:] - by_id[:, 3:]).max(), 1e-2)
        with pytest.raises(ValueError, match=r"`padding_mask` must be a boolean"):
            model({"token_ids": token_ids, "padding_mask": mask.astype("float32")})

    def test_mixed_precision_gives_float32_logits(self):
        model = small_model(dtype="mixed_bfloat16", position_embedding="rotary")
        restored = CausalLM.from_config(model.get_config())
        for layer in model.layers + restored.layers:
            if not isinstance(layer, keras.layers.InputLayer):
                self.assertEqual(layer.dtype_policy.name, "mixed_bfloat16", layer.name)
        outputs = model(tokens())
        self.assertEqual(keras.backend.standardize_dtype(outputs.dtype), "float32")
        self.assertTrue(np.all(np.isfinite(keras.ops.convert_to_numpy(outputs))))
        caches = model.initialize_caches(2, 6)
        self.assertEqual(keras.backend.standardize_dtype(caches[0].dtype), "bfloat16")

    def test_untied_output_embeddings_add_an_output_matrix(self):
        untied = shared_model(tie_output_embeddings=False)
        difference = untied.count_params() - shared_model().count_params()
        self.assertEqual(difference, SMALL["hidden_dim"] * VOCABULARY_SIZE)

    def test_fit_lowers_the_loss_with_packed_rows(self):
        model = small_model(packed_inputs=True)
        rng = np.random.default_rng(0)
        data = 3 + rng.integers(0, 4, size=(32, 7)).astype("int32")
        data[:, 1::2] = data[:, 0::2][:, :3] + 4  # the next token is learnable
        segments = np.repeat(np.array([[0, 0, 0, 1, 1, 1]], "int32"), 32, axis=0)
        # Positions are filled in (0, 1, ...) inside the compiled step.
        inputs = {"token_ids": data[:, :-1], "segment_ids": segments}
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(inputs, data[:, 1:], epochs=6, batch_size=16, verbose=0)
        losses = history.history["loss"]
        self.assertLess(losses[-1], 0.8 * losses[0])

    def test_keras_file_round_trip_gives_identical_outputs(self):
        model = shared_model(**{**VARIANTS["rotary"], "packed_inputs": True})
        path = os.path.join(self.get_temp_dir(), "causal_lm.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        self.assertIsInstance(restored, CausalLM)
        self.assertEqual(restored.get_config(), model.get_config())
        inputs = packed_inputs()
        np.testing.assert_array_equal(logits(restored, inputs), logits(model, inputs))

    def test_config_keys_are_constructor_arguments(self):
        model = shared_model(sliding_window=(2, None))
        parameters = set(inspect.signature(CausalLM).parameters) - {"kwargs"}
        config = model.get_config()
        self.assertEqual(set(config) - {"name", "trainable", "dtype"}, parameters)
        self.assertEqual(config["sliding_window"], [2, None])
        self.assertEqual(CausalLM.from_config(config).get_config(), config)

    @parameterized.named_parameters(
        ("vocabulary_size", {"vocabulary_size": 0}, r"`vocabulary_size`.*received 0"),
        ("position_name", {"position_embedding": "alibi"},
         r"`position_embedding` must be one of 'learned', 'sinusoidal', 'rotary'; "
         r"received 'alibi'"),
        ("learned_length", {"max_sequence_length": None},
         r"`max_sequence_length` must be a positive integer with "
         r'position_embedding="learned"; received None'),
        ("window_zero", {"sliding_window": 0}, r"`sliding_window`.*received 0"),
        ("window_list", {"sliding_window": [2]},
         r"`sliding_window` must be .*num_layers=2.*received \[2\]"),
        ("window_item", {"sliding_window": [2, 0]}, r"`sliding_window\[1\]`.*0\."),
        ("kv_heads", {"num_key_value_heads": 3}, r"`num_heads`.*num_key_value_heads"),
        ("padding_id", {"padding_id": 11}, r"`padding_id`.*received 11"),
        ("activation", {"activation": "nope"}, r"`activation`.*received 'nope'"),
        ("rotary_heads", {"position_embedding": "rotary", "hidden_dim": 12},
         r"`num_heads` must be a divisor of hidden_dim leaving an even head size"),
        ("packed_inputs", {"packed_inputs": "yes"}, r"`packed_inputs`.*'yes'"),
        ("dropout", {"dropout": 1.0}, r"`dropout`.*received 1.0"),
    )  # fmt: skip
    def test_bad_arguments_fail_naming_the_model(self, overrides, message):
        with pytest.raises(ValueError, match=f"CausalLM.*{message}"):
            small_model(**overrides)

    def test_bad_inputs_fail_naming_the_argument(self):
        model = shared_model()
        token_ids = tokens()
        token_ids[1, 2] = -1
        with pytest.raises(ValueError, match=r"`token_ids`.*\[0, 11\).*-1 at"):
            model({"token_ids": token_ids})
        with pytest.raises(ValueError, match=r"`inputs`.*keys among.*\['ids'"):
            model({"ids": tokens(), "token_ids": tokens()})
        with pytest.raises(ValueError, match=r"`inputs`.*'token_ids'.*\['padding"):
            model({"padding_mask": tokens() > 0})
        with pytest.raises(ValueError, match=r"`padding_mask` must be of the shape"):
            model({"token_ids": tokens(), "padding_mask": tokens()[:, :4] > 0})
        with pytest.raises(ValueError, match=r"`token_ids` must be at most max_seq"):
            model(np.ones((1, 9), "int32"))


class CausalLMPresetTest(TestCase, parameterized.TestCase):
    @parameterized.named_parameters(
        # Hugging Face's counts of GPT2LMHeadModel (tied head).
        ("gpt2", "gpt2", 124_439_808, 12),
        ("gpt2_medium", "gpt2-medium", 354_823_168, 24),
    )
    def test_preset_has_hugging_faces_parameter_count(self, name, count, layers):
        # Variables are never allocated (0.3 s, not 0.5-1.4 GB of weights).
        model = build_without_allocating(lambda: causal_lm_preset(name))
        self.assertEqual(model.count_params(), count)
        self.assertEqual(model.num_layers, layers)
        config = model.get_config()
        self.assertEqual(config["activation"]["config"], "keras_attn>gelu_approximate")
        self.assertIsNone(config["padding_id"])

    def test_preset_overrides_and_unknown_name(self):
        model = build_without_allocating(
            lambda: causal_lm_preset("gpt2-medium", vocabulary_size=11, num_layers=1)
        )
        self.assertEqual(model.name, "gpt2_medium")
        self.assertEqual((model.vocabulary_size, model.num_layers), (11, 1))
        self.assertEqual((model.hidden_dim, model.max_sequence_length), (1024, 1024))
        with pytest.raises(
            ValueError,
            match=r"causal_lm_preset: argument `name` must be one of 'gpt2', "
            r"'gpt2-medium'; received 'gpt3'",
        ):
            causal_lm_preset("gpt3")
