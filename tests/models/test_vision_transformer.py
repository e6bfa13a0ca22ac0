import inspect
import os
from unittest import mock

import keras
import numpy as np
from absl.testing import parameterized

from keras_attn.models import vision_transformer
from keras_attn.models.vision_transformer import VisionTransformer
from keras_attn.models.vision_transformer import vision_transformer_preset
from keras_attn.ops.resize import resample_position_grid
from tests import _tiny_models
from tests._keras_private import TestCase
from tests._tiny_models import build_without_allocating
from tests._tiny_models import randomize

# 8x8 single-channel images in 2x2 patches: a 4x4 grid, 17 tokens with the class token.
SMALL = _tiny_models.VISION_TRANSFORMER
small_model = _tiny_models.tiny_vision_transformer


def shared_model(randomized=False, **overrides):
    """The session's tiny ViT, for the tests that do not change it."""
    return _tiny_models.shared(VisionTransformer, randomized, **overrides)


def random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def logits(model, images):
    """The model's outputs as NumPy: `predict` on JAX, an eager call elsewhere.

    An eager JAX call compiles every op again for each new shape, several times
    the cost of compiling the whole model once in `predict`; on TensorFlow and
    PyTorch the eager call is the cheaper one.
    """
    if keras.backend.backend() == "jax":
        return model.predict(images, verbose=0)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, model(images))


def count_params_without_allocating(make_model):
    """`count_params()` of a model whose variables are never materialised."""
    return build_without_allocating(make_model).count_params()


class VisionTransformerTest(TestCase):
    def test_logits_shape_and_stable_layer_names(self):
        model = small_model(num_layers=3)
        self.assertEqual(
            [layer.name for layer in model.layers],
            [
                "images",
                "patch_embedding",
                "embedding_dropout",
                "encoder_layer_0",
                "encoder_layer_1",
                "encoder_layer_2",
                "encoder_norm",
                "head",
            ],
        )
        self.assertEqual(model.output.shape, (None, 5))
        self.assertEqual(model.get_layer("head").activation, keras.activations.linear)

    def test_encoders_are_pre_layer_norm_with_gelu(self):
        model = small_model(num_layers=2, layer_norm_epsilon=1e-3, dropout=0.1)
        encoder = model.get_layer("encoder_layer_1")
        self.assertTrue(encoder.normalize_first)
        self.assertEqual(encoder.activation, keras.activations.gelu)
        self.assertEqual(encoder.intermediate_dim, 32)
        self.assertEqual(encoder.num_heads, 2)
        self.assertEqual(encoder.layer_norm_epsilon, 1e-3)
        self.assertEqual(model.get_layer("encoder_norm").epsilon, 1e-3)
        self.assertEqual(model.get_layer("embedding_dropout").rate, 0.1)
        self.assertEqual(encoder.dropout, 0.1)
        self.assertEqual(encoder.attention_dropout, 0.0)

    @parameterized.named_parameters(
        ("b16", "ViT-B/16", 86e6),
        ("l16", "ViT-L/16", 307e6),
        ("h14", "ViT-H/14", 632e6),
    )
    def test_parameter_count_matches_the_paper(self, preset, paper_count):
        # Counted from the variables' shapes only; see the helper.
        count = count_params_without_allocating(
            lambda: vision_transformer_preset(preset)
        )
        self.assertLess(abs(count - paper_count) / paper_count, 0.02)

    def test_count_without_allocating_equals_the_allocated_count(self):
        config = {**SMALL, "representation_size": 12}
        expected = VisionTransformer(**config).count_params()
        self.assertEqual(
            count_params_without_allocating(lambda: VisionTransformer(**config)),
            expected,
        )
        # Patch projection, class token, 17 positions, a block, final norm, head.
        block = 4 * (16 * 16 + 16) + 2 * 2 * 16 + (16 * 32 + 32) + (32 * 16 + 16)
        head = (16 * 12 + 12) + (12 * 5 + 5)
        self.assertEqual(expected, (4 * 16 + 16) + 16 + 17 * 16 + block + 2 * 16 + head)

    def test_fit_lowers_the_loss(self):
        # The class is the brightness of the image, under noise.
        labels = np.arange(32) % 4
        noise = np.random.default_rng(0).normal(size=(32, 8, 8, 1))
        images = (labels[:, None, None, None] / 3.0 + 0.1 * noise).astype("float32")
        model = small_model(num_classes=4, dropout=0.1)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            # XLA on TensorFlow and JAX; Keras has no XLA path for PyTorch.
            jit_compile=keras.backend.backend() != "torch",
        )
        history = model.fit(images, labels, batch_size=8, epochs=4, verbose=0)
        losses = history.history["loss"]
        self.assertLess(losses[-1], 0.8 * losses[0])

    def test_keras_file_round_trip_gives_identical_outputs(self):
        model = shared_model(True, representation_size=8, shifted_patches=True)
        images = random((2, 8, 8, 1))
        path = os.path.join(self.get_temp_dir(), "vit.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        self.assertIsInstance(restored, VisionTransformer)
        self.assertEqual(restored.get_config(), model.get_config())
        self.assertAllClose(
            logits(restored, images), logits(model, images), atol=0, rtol=0
        )

    def test_config_keys_are_exactly_the_constructor_arguments(self):
        model = small_model(name="vit")
        config = model.get_config()
        arguments = set(inspect.signature(VisionTransformer).parameters) - {"kwargs"}
        # `trainable` is passed on to `keras.Model` through `**kwargs`.
        self.assertEqual(set(config), arguments | {"trainable"})
        clone = VisionTransformer.from_config(config)
        self.assertEqual(clone.get_config(), config)
        self.assertEqual(
            [(w.path, w.shape) for w in clone.weights],
            [(w.path, w.shape) for w in model.weights],
        )

    def test_other_image_size_equals_resampled_position_table(self):
        model = shared_model(randomized=True)  # position grid 4x4
        images = random((2, 12, 12, 1))  # grid 6x6
        # The same model built for 12x12 images, with the table resized by hand.
        weights = model.get_weights()
        table = model.get_layer("patch_embedding").position_table
        index = [id(w) for w in model.weights].index(id(table))
        weights[index] = keras.ops.convert_to_numpy(
            resample_position_grid(weights[index], (4, 4), (6, 6))
        )
        reference = VisionTransformer(**{**SMALL, "image_size": 12})
        reference.set_weights(weights)
        expected = logits(reference, images)
        # `predict` traces with unknown sizes on TensorFlow: a dynamic grid.
        self.assertAllClose(model.predict(images, verbose=0), expected, atol=1e-5)

    def test_shifted_patches_stack_five_copies_of_the_image(self):
        model = shared_model(True, representation_size=8, shifted_patches=True)
        embedding = model.get_layer("patch_embedding")
        self.assertTrue(embedding.shifted_patches)
        self.assertEqual(embedding.projection.kernel.shape, (2, 2, 5, 16))
        self.assertEqual(logits(model, random((3, 8, 8, 1))).shape, (3, 5))

    def test_non_square_images(self):
        outputs = logits(shared_model(randomized=True), random((3, 12, 6, 1)))
        self.assertEqual(outputs.shape, (3, 5))

    def test_token_pooling_takes_the_class_token(self):
        model = shared_model(True, include_top=False, num_classes=None)
        tokens, pooled = pooled_and_tokens(model, random((2, 8, 8, 1)))
        self.assertEqual(tokens.shape, (2, 17, 16))  # class token and 16 patches
        self.assertAllClose(pooled, tokens[:, 0], atol=1e-6)

    def test_mean_pooling_averages_patches_without_class_token(self):
        model = shared_model(True, pooling="mean", include_top=False)
        self.assertFalse(model.get_layer("patch_embedding").use_class_token)
        self.assertNotIn("class_token", [w.name for w in model.weights])
        tokens, pooled = pooled_and_tokens(model, random((2, 8, 8, 1)))
        self.assertEqual(tokens.shape, (2, 16, 16))  # 16 patches
        self.assertAllClose(pooled, tokens.mean(axis=1), atol=1e-6)

    def test_representation_size_adds_tanh_pre_logits(self):
        model = small_model(representation_size=12, include_top=False)
        self.assertEqual(
            model.get_layer("pre_logits").activation, keras.activations.tanh
        )
        self.assertEqual(model.output.shape, (None, 12))

    def test_mixed_precision(self):
        model = small_model(dtype="mixed_bfloat16")
        self.assertEqual(model.output.dtype, "bfloat16")
        self.assertEqual({w.dtype for w in model.weights}, {"float32"})
        policy = keras.dtype_policies.deserialize(model.get_config()["dtype"])
        self.assertEqual(policy.name, "mixed_bfloat16")
        out = logits(randomize(model), random((2, 8, 8, 1)))
        self.assertTrue(np.all(np.isfinite(np.asarray(out, "float32"))))

    @parameterized.named_parameters(
        ("image_size", {"image_size": 9}, r"`image_size` must be divisible by pat"),
        ("patch_size", {"patch_size": 0}, "`patch_size` must be a positive integer"),
        ("num_layers", {"num_layers": 1.5}, "`num_layers`.*received 1.5"),
        ("num_heads", {"num_heads": 3}, "`hidden_dim` must be divisible by num_he"),
        ("hidden_dim", {"hidden_dim": -16}, "`hidden_dim`.*received -16"),
        ("mlp_dim", {"mlp_dim": None}, "`mlp_dim`.*received None"),
        ("num_classes", {"num_classes": None}, "`num_classes`.*received None"),
        ("channels", {"channels": 0}, "`channels`.*received 0"),
        ("pooling", {"pooling": "max"}, "`pooling` must be one of 'token', 'mean'"),
        ("dropout", {"dropout": 1.0}, r"`dropout` must be a number in \[0, 1\)"),
        ("attention_dropout", {"attention_dropout": -0.1}, "`attention_dropout`"),
        ("epsilon", {"layer_norm_epsilon": 0}, "`layer_norm_epsilon`"),
        ("representation", {"representation_size": 0}, "`representation_size`"),
        ("include_top", {"include_top": "yes"}, "`include_top` must be True or"),
    )
    def test_bad_arguments_raise(self, overrides, message):
        with self.assertRaisesRegex(ValueError, "VisionTransformer 'vit'.*" + message):
            small_model(name="vit", **overrides)

    def test_wrong_channel_count_raises(self):
        model = shared_model(name="vit")
        message = (
            r"VisionTransformer 'vit': argument `images` must have 1 channels.*"
            r"received a tensor of shape \(2, 8, 8, 3\)"
        )
        with self.assertRaisesRegex(ValueError, message):
            model(random((2, 8, 8, 3)))
        with self.assertRaisesRegex(ValueError, "must have 1 channels"):
            model(keras.Input((8, 8, 3)))
        # A fresh model: on JAX a failed `predict` leaves the variables purged.
        with self.assertRaisesRegex(ValueError, "must have 1 channels"):
            small_model().predict(random((2, 8, 8, 3)), verbose=0)

    def test_image_size_not_divisible_by_patch_raises(self):
        with self.assertRaisesRegex(
            ValueError, r"`images width` must be divisible by patch_size \(2\)"
        ):
            shared_model()(random((1, 8, 7, 1)))

    def test_wrong_rank_raises(self):
        with self.assertRaisesRegex(ValueError, "`images` must have rank 4"):
            shared_model()(random((8, 8, 1)))


def pooled_and_tokens(model, images):
    """The encoder's normalised tokens and the model's pooled output."""
    tokens = model.get_layer("encoder_norm").output
    return logits(keras.Model(model.input, [tokens, model.output]), images)


def preset_config(preset, **overrides):
    """The arguments `vision_transformer_preset` gives `VisionTransformer`."""
    with mock.patch.object(
        vision_transformer, "VisionTransformer", lambda **config: config
    ):
        return vision_transformer_preset(preset, **overrides)


class VisionTransformerPresetTest(TestCase):
    @parameterized.named_parameters(
        ("tiny", "vit_tiny_16", "ViT-Ti/16", (12, 192, 3, 768, 16)),
        ("small", "vit_small_16", "ViT-S/16", (12, 384, 6, 1536, 16)),
        ("base16", "vit_base_16", "ViT-B/16", (12, 768, 12, 3072, 16)),
        ("base32", "vit_base_32", "vit-b/32", (12, 768, 12, 3072, 32)),
        ("large16", "vit_large_16", "vit_l_16", (24, 1024, 16, 4096, 16)),
        ("large32", "vit_large_32", "ViT-L/32", (24, 1024, 16, 4096, 32)),
        ("huge", "vit_huge_14", "ViT-H/14", (32, 1280, 16, 5120, 14)),
    )
    def test_preset_and_alias_give_the_paper_configuration(self, name, alias, sizes):
        config = preset_config(name)
        keys = ("num_layers", "hidden_dim", "num_heads", "mlp_dim", "patch_size")
        self.assertEqual(tuple(config[k] for k in keys), sizes)
        self.assertEqual(
            (config["image_size"], config["num_classes"], config["channels"]),
            (224, 1000, 3),
        )
        self.assertEqual(config["name"], name)
        self.assertEqual(preset_config(alias), config)

    def test_overrides_replace_preset_values(self):
        config = preset_config(
            "ViT-B/16", image_size=384, num_classes=10, pooling="mean", name="mine"
        )
        self.assertEqual(config["image_size"], 384)
        self.assertEqual(config["num_classes"], 10)
        self.assertEqual(config["pooling"], "mean")
        self.assertEqual(config["name"], "mine")
        self.assertEqual(config["hidden_dim"], 768)

    def test_unknown_name_lists_the_presets(self):
        with self.assertRaisesRegex(
            ValueError,
            r"vision_transformer_preset: argument `name` must be one of "
            r"'vit_tiny_16', .*'vit_huge_14', 'ViT-Ti/16', .*'ViT-H/14' "
            r"\(case-insensitive\); received 'ViT-G/14'",
        ):
            vision_transformer_preset("ViT-G/14")
