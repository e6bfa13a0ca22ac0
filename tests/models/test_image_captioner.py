import inspect
import os

import keras
import numpy as np
import pytest
from absl.testing import parameterized

from keras_attn.generation import generate
from keras_attn.models.image_captioner import ImageCaptioner
from tests import _tiny_models
from tests._keras_private import TestCase
from tests._tiny_models import END_ID
from tests._tiny_models import START_ID
from tests._tiny_models import random_images

# 8x8 RGB images in 2x2 patches: 16 image tokens.
SMALL = _tiny_models.IMAGE_CAPTIONER
VOCABULARY_SIZE = SMALL["vocabulary_size"]
ENCODERS = [("cnn", "cnn"), ("vit", "vit")]
small_model = _tiny_models.tiny_image_captioner


def random_tokens(batch, length, seed=0):
    return _tiny_models.random_tokens(batch, length, VOCABULARY_SIZE, seed)


def shared_model(encoder):
    """One randomised model per encoder for the tests that do not train it."""
    return _tiny_models.shared(ImageCaptioner, randomized=True, encoder=encoder)


class ImageCaptionerTest(TestCase, parameterized.TestCase):
    @parameterized.named_parameters(ENCODERS)
    def test_logits_shape_and_stable_layer_names(self, encoder):
        model = shared_model(encoder)
        inputs = {"images": random_images(3), "decoder_token_ids": random_tokens(3, 5)}
        self.assertEqual(tuple(model(inputs).shape), (3, 5, VOCABULARY_SIZE))
        names = {layer.name for layer in model.layers}
        expected = {"encoder_layer_0", "decoder_layer_0", "decoder_layer_1"}
        expected |= {"decoder_token_embedding", "encoder_norm", "decoder_norm"}
        if encoder == "cnn":
            expected |= {"image_conv_0", "image_norm_0", "image_projection"}
            expected |= {"image_position_embedding"}
        else:
            expected |= {"patch_embedding"}
        self.assertContainsSubset(expected, names)

    def test_encode_returns_image_tokens_and_no_padding_mask(self):
        model = small_model(image_size=(8, 4), channels=2)
        self.assertEqual(model.get_config()["image_size"], (8, 4))
        encoded, mask = model.encode(random_images(2, channels=2)[:, :, :4])
        self.assertEqual(tuple(encoded.shape), (2, 4 * 2, 16))  # a 4x2 grid
        self.assertIsNone(mask)

    @parameterized.named_parameters(ENCODERS)
    def test_model_equals_encode_then_decode(self, encoder):
        model = shared_model(encoder)
        images, tokens = random_images(2), random_tokens(2, 6)
        logits = model({"images": images, "decoder_token_ids": tokens})
        encoded, mask = model.encode(images)
        expected, _ = model.decode(tokens, encoded, mask)
        self.assertAllClose(logits, expected, atol=1e-5)

    @parameterized.named_parameters(ENCODERS)
    def test_cached_decoding_equals_full_logits(self, encoder):
        model = shared_model(encoder)
        images, tokens = random_images(2), random_tokens(2, 6)
        encoded, mask = model.encode(images)
        full, _ = model.decode(tokens, encoded, mask)  # (2, 6, V)
        caches = model.initialize_caches(encoded, mask, max_length=6)
        steps = []
        for index in range(6):
            # A tensor index, as `generate` passes it (and JAX compiles it once).
            logits, caches = model.decode(
                tokens[:, index : index + 1],
                None,
                caches=caches,
                start_index=keras.ops.convert_to_tensor(index, "int32"),
            )
            steps.append(keras.ops.convert_to_numpy(logits))
        self.assertAllClose(np.concatenate(steps, axis=1), full, atol=1e-4)

    @parameterized.named_parameters(ENCODERS)
    def test_fit_lowers_the_loss(self, encoder):
        model = small_model(encoder=encoder)
        tokens = random_tokens(8, 7)
        inputs = {"images": random_images(8), "decoder_token_ids": tokens[:, :-1]}
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(inputs, tokens[:, 1:], epochs=8, batch_size=8, verbose=0)
        losses = history.history["loss"]
        self.assertLess(losses[-1], 0.8 * losses[0])

    @parameterized.named_parameters(ENCODERS)
    def test_keras_file_round_trip_gives_identical_outputs(self, encoder):
        model = shared_model(encoder)
        inputs = {"images": random_images(2), "decoder_token_ids": random_tokens(2, 5)}
        path = os.path.join(self.get_temp_dir(), "captioner.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        self.assertIsInstance(restored, ImageCaptioner)
        self.assertEqual(restored.get_config(), model.get_config())
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(restored(inputs)),
            keras.ops.convert_to_numpy(model(inputs)),
        )

    @parameterized.named_parameters(ENCODERS)
    def test_dtype_policy_reaches_every_layer_and_logits_stay_float32(self, encoder):
        model = small_model(encoder=encoder, dtype="mixed_bfloat16")
        restored = ImageCaptioner.from_config(model.get_config())
        for layer in model.layers + restored.layers:
            if not isinstance(layer, keras.layers.InputLayer):
                self.assertEqual(layer.dtype_policy.name, "mixed_bfloat16", layer.name)
        self.assertEqual({weight.dtype for weight in model.weights}, {"float32"})
        inputs = {"images": random_images(2), "decoder_token_ids": random_tokens(2, 5)}
        outputs = model(inputs)
        self.assertEqual(keras.backend.standardize_dtype(outputs.dtype), "float32")
        self.assertTrue(np.all(np.isfinite(keras.ops.convert_to_numpy(outputs))))

    def test_config_keys_are_constructor_arguments(self):
        model = shared_model("cnn")
        parameters = set(inspect.signature(ImageCaptioner).parameters) - {"kwargs"}
        config = model.get_config()
        self.assertEqual(set(config) - {"name", "trainable", "dtype"}, parameters)
        self.assertEqual(ImageCaptioner.from_config(config).get_config(), config)

    @parameterized.named_parameters(ENCODERS)
    def test_cached_greedy_generation_equals_uncached(self, encoder):
        model = shared_model(encoder)
        images = random_images(4)
        cached, uncached = (
            keras.ops.convert_to_numpy(
                generate(
                    model,
                    images,
                    start_token_id=START_ID,
                    end_token_id=END_ID,
                    max_length=7,
                    use_cache=use_cache,
                )
            )
            for use_cache in (True, False)
        )
        self.assertEqual(cached.shape, (4, 7))
        np.testing.assert_array_equal(cached[:, 0], START_ID)
        np.testing.assert_array_equal(cached, uncached)

    def test_cached_beam_search_equals_uncached(self):
        from keras_hub.samplers import BeamSampler

        model = shared_model("vit")
        images = random_images(3)
        cached, uncached = (
            keras.ops.convert_to_numpy(
                generate(
                    model,
                    images,
                    start_token_id=START_ID,
                    end_token_id=END_ID,
                    max_length=6,
                    sampler=BeamSampler(num_beams=3),
                    use_cache=use_cache,
                )
            )
            for use_cache in (True, False)
        )
        np.testing.assert_array_equal(cached, uncached)

    def test_images_with_wrong_channels_fail_naming_the_model(self):
        model = shared_model("cnn")
        images = random_images(2, channels=1)
        inputs = {"images": images, "decoder_token_ids": random_tokens(2, 4)}
        with pytest.raises(ValueError, match=r"ImageCaptioner.*`images`.*3 channels"):
            model(inputs)
        with pytest.raises(ValueError, match=r"ImageCaptioner.*\(2, 8, 8, 1\)"):
            generate(model, images, start_token_id=START_ID, max_length=4)

    def test_images_with_wrong_rank_or_size_fail(self):
        model = shared_model("cnn")
        tokens = random_tokens(2, 4)
        with pytest.raises(ValueError, match=r"ImageCaptioner.*`images`.*rank 4"):
            model({"images": random_images(2)[..., 0], "decoder_token_ids": tokens})
        with pytest.raises(ValueError, match=r"ImageCaptioner.*`images`.*8x8 pixels"):
            model({"images": random_images(2, size=4), "decoder_token_ids": tokens})
        with pytest.raises(ValueError, match=r"ImageCaptioner.*`inputs`"):
            model(random_images(2))

    def test_decoder_token_ids_outside_the_vocabulary_fail_naming_them(self):
        tokens = random_tokens(2, 4)
        tokens[1, 3] = VOCABULARY_SIZE
        with pytest.raises(
            ValueError,
            match=r"ImageCaptioner '.*': argument `decoder_token_ids` must hold token "
            r"ids in \[0, 13\) \(the vocabulary size is 13\); received the id 13 at "
            r"index \(1, 3\)",
        ):
            shared_model("cnn")(
                {"images": random_images(2), "decoder_token_ids": tokens}
            )

    @parameterized.named_parameters(
        ("start_outside", "start_token_id", VOCABULARY_SIZE),
        ("start_negative", "start_token_id", -1),
        ("start_is_padding", "start_token_id", 0),
        ("end_outside", "end_token_id", VOCABULARY_SIZE + 5),
    )
    def test_generate_rejects_tokens_outside_the_vocabulary(self, argument, value):
        model = shared_model("cnn")
        tokens = {"start_token_id": START_ID, "end_token_id": END_ID, argument: value}
        with pytest.raises(ValueError, match=f"`{argument}`.*{value}"):
            generate(model, random_images(1), max_length=4, **tokens)

    @parameterized.named_parameters(
        ("encoder", {"encoder": "rnn"}, "`encoder`.*'rnn'"),
        ("cnn_patch", {"patch_size": 3, "image_size": 9}, "`patch_size`.*3"),
        ("image_size", {"image_size": 10, "encoder": "vit", "patch_size": 4}, "10"),
        ("image_size_type", {"image_size": "8"}, "`image_size`.*'8'"),
        ("channels", {"channels": 0}, "`channels`.*0"),
        ("vocabulary_size", {"vocabulary_size": 0}, "`vocabulary_size`.*0"),
        ("padding_id", {"padding_id": VOCABULARY_SIZE}, "`padding_id`.*13"),
        ("padding_id_bool", {"padding_id": False}, "`padding_id`.*False"),
        ("image_size_pair", {"image_size": (8, 0)}, r"`image_size`.*\(8, 0\)"),
        ("num_heads", {"num_heads": 3}, "`hidden_dim`.*num_heads"),
        ("dropout", {"dropout": 1.0}, "`dropout`.*1.0"),
    )
    def test_bad_arguments_fail_naming_the_model(self, overrides, message):
        with pytest.raises(ValueError, match=f"ImageCaptioner.*{message}"):
            small_model(**overrides)
