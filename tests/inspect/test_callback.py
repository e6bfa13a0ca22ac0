"""AttentionMapsCallback: attention diagnostics in TensorBoard while a model trains.

The event files are read back with TensorBoard's own `EventAccumulator`, and the
values compared with the diagnostics recomputed here on the trained model.
"""

import io
import os
import sys

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from keras_attn import inspect
from keras_attn.inspect._tensorboard import EventFile
from keras_attn.inspect.callback import AttentionMapsCallback
from keras_attn.models import ImageCaptioner
from tests._tiny_models import PADDING_ID
from tests._tiny_models import VISION_TRANSFORMER
from tests._tiny_models import random_images
from tests._tiny_models import random_tokens
from tests._tiny_models import shared
from tests._tiny_models import tiny_transformer
from tests._tiny_models import tiny_vision_transformer

HEADS = VISION_TRANSFORMER["num_heads"]
GRID, PATCH = (4, 4), 2  # 8x8 images in 2x2 patches, after a class token
VIT_LAYERS = ["encoder_layer_0/self_attention", "encoder_layer_1/self_attention"]
TEXT_LAYERS = [
    "encoder_layer_0/self_attention",
    "decoder_layer_0/self_attention",
    "decoder_layer_0/cross_attention",
]


def events(log_dir):
    """TensorBoard's reading of `log_dir/attention`, every event kept."""
    accumulator = event_accumulator.EventAccumulator(
        os.path.join(log_dir, "attention"),
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0},
    )
    accumulator.Reload()
    return accumulator


def last_scalars(accumulator, kind, layers):
    """`{layer: (H,) values}` of the last step, for `kind` tags."""
    return {
        layer: np.array(
            [
                accumulator.Scalars(f"{kind}/{layer}/head_{h}")[-1].value
                for h in range(HEADS)
            ]
        )
        for layer in layers
    }


def numpy_entropy(scores):
    """Per head, the mean of -sum p ln p over the rows that are not all zero."""
    means = []
    for head in range(scores.shape[1]):
        rows = scores[:, head].reshape(-1, scores.shape[-1]).astype("float64")
        rows = rows[rows.sum(axis=-1) > 0]
        plogp = [[p * np.log(p) for p in row if p > 0] for row in rows]
        means.append(np.mean([-np.sum(terms) for terms in plogp]))
    return np.array(means)


def fit(model, x, y, epochs, callbacks):
    model.compile(
        optimizer=keras.optimizers.SGD(1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # One batch per epoch: JAX compiles the training step once per model.
    model.fit(x, y, batch_size=len(y), epochs=epochs, verbose=0, callbacks=callbacks)
    return model


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    """A ViT trained 4 epochs; one callback writes every epoch (TensorBoard and
    explorer pages), another every second epoch (`root/every_2`)."""
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("vit")
    images = random_images(8, channels=1)
    inputs = images[:2]
    callbacks = [
        AttentionMapsCallback(
            inputs, log_dir=str(root / "logs"), explorer_dir=root / "pages"
        ),
        AttentionMapsCallback(
            inputs, every_n_epochs=2, log_dir=root / "every_2", diagnostics="entropy"
        ),
    ]
    model = tiny_vision_transformer(num_layers=2)
    fit(model, images, np.arange(8) % 5, epochs=4, callbacks=callbacks)
    return model, inputs, root


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A copy task trained 2 epochs; the callback's second example is all
    padding, so its encoder queries attend to nothing."""
    keras.utils.set_random_seed(0)
    source = random_tokens(8, 5, 11)
    source[::2, 3:] = PADDING_ID
    source[1] = PADDING_ID
    start = np.ones((8, 1), "int32")
    inputs = {
        "encoder_token_ids": source,
        "decoder_token_ids": np.concatenate([start, source[:, :-1]], axis=1),
    }
    log_dir = str(tmp_path_factory.mktemp("text"))
    shown = {name: ids[:2] for name, ids in inputs.items()}
    callback = AttentionMapsCallback(shown, log_dir=log_dir)
    model = fit(tiny_transformer(num_layers=1), inputs, source, 2, [callback])
    return model, shown, log_dir


def test_image_model_tags_cover_every_head_layer_and_example(vit_run):
    _, _, root = vit_run
    tags = events(root / "logs").Tags()

    expected = [
        f"{kind}/{layer}/head_{h}"
        for kind in ("attention_distance", "attention_entropy")
        for layer in VIT_LAYERS
        for h in range(HEADS)
    ]
    assert sorted(tags["scalars"]) == sorted(expected)
    assert sorted(tags["images"]) == [
        "attention_rollout/example_0",
        "attention_rollout/example_1",
    ]


def test_every_epoch_is_a_step_numbered_from_one(vit_run):
    _, _, root = vit_run
    accumulator = events(root / "logs")

    tags = accumulator.Tags()
    for tag in tags["scalars"]:
        assert [event.step for event in accumulator.Scalars(tag)] == [1, 2, 3, 4]
    for tag in tags["images"]:
        assert [event.step for event in accumulator.Images(tag)] == [1, 2, 3, 4]


def test_each_epoch_is_measured_on_its_weights(vit_run):
    # The last step equals the trained model's diagnostics to 1e-5 (tests
    # below); the first, written before three more steps of training, moved
    # by more than ten times that.
    _, _, root = vit_run
    accumulator = events(root / "logs")

    for tag in accumulator.Tags()["scalars"]:
        first, *_, last = [event.value for event in accumulator.Scalars(tag)]
        assert abs(last - first) > 1e-4 * abs(first), tag


def test_entropy_is_that_of_the_maps_in_nats(vit_run):
    model, inputs, root = vit_run
    maps = inspect.attention_maps(model, inputs)

    written = last_scalars(events(root / "logs"), "attention_entropy", VIT_LAYERS)

    for layer in VIT_LAYERS:
        np.testing.assert_allclose(written[layer], numpy_entropy(maps[layer]), 1e-5)


def test_distance_is_mean_attention_distance(vit_run):
    model, inputs, root = vit_run
    maps = inspect.attention_maps(model, inputs)
    expected = inspect.mean_attention_distance(maps, GRID, PATCH)

    written = last_scalars(events(root / "logs"), "attention_distance", VIT_LAYERS)

    for layer in VIT_LAYERS:
        np.testing.assert_allclose(written[layer], expected[layer], rtol=1e-5)


def test_rollout_images_show_the_class_token_row_on_the_patch_grid(vit_run):
    from matplotlib import image as mpimg

    model, inputs, root = vit_run
    maps = inspect.attention_maps(model, inputs)
    rollout = inspect.attention_rollout([maps[layer] for layer in VIT_LAYERS])
    heat = inspect.class_token_map(rollout, GRID)  # (B, 4, 4)
    accumulator = events(root / "logs")

    for i, example in enumerate(heat):
        written = accumulator.Images(f"attention_rollout/example_{i}")[-1]
        pixels = mpimg.imread(io.BytesIO(written.encoded_image_string), "png")
        # Each patch is a 32x32 square (128 pixels across), the range 0..255.
        assert (written.height, written.width) == pixels.shape == (128, 128)
        scaled = (example - example.min()) / (example.max() - example.min()) * 255
        np.testing.assert_allclose(
            np.round(pixels[::32, ::32] * 255), np.round(scaled), atol=1
        )
        assert np.all(pixels == np.kron(pixels[::32, ::32], np.ones((32, 32))))


def test_an_explorer_page_is_written_every_epoch(vit_run):
    _, _, root = vit_run

    pages = sorted(os.listdir(root / "pages"))

    assert pages == [f"epoch_00{epoch}.html" for epoch in (1, 2, 3, 4)]
    for page in pages:
        text = (root / "pages" / page).read_text(encoding="utf-8")
        assert "<html" in text.lower() and "encoder_layer_1/self_attention" in text


def test_every_n_epochs_writes_epochs_n_and_2n(vit_run):
    _, _, root = vit_run
    accumulator = events(root / "every_2")

    tags = accumulator.Tags()["scalars"]
    assert len(tags) == len(VIT_LAYERS) * HEADS
    for tag in tags:
        assert [event.step for event in accumulator.Scalars(tag)] == [2, 4], tag


def test_a_text_model_gets_entropy_of_every_layer_only(text_run):
    _, _, log_dir = text_run
    tags = events(log_dir).Tags()

    assert sorted(tags["scalars"]) == sorted(
        f"attention_entropy/{layer}/head_{h}"
        for layer in TEXT_LAYERS
        for h in range(HEADS)
    )
    assert tags["images"] == []


def test_entropy_leaves_queries_without_keys_out(text_run):
    model, inputs, log_dir = text_run
    maps = inspect.attention_maps(model, inputs)

    written = last_scalars(events(log_dir), "attention_entropy", TEXT_LAYERS)

    for layer in TEXT_LAYERS:
        np.testing.assert_allclose(written[layer], numpy_entropy(maps[layer]), 1e-5)
    # The second example's encoder rows are all zero: only the first one counts.
    encoder = TEXT_LAYERS[0]
    assert np.all(maps[encoder][1] == 0)
    np.testing.assert_allclose(written[encoder], numpy_entropy(maps[encoder][:1]), 1e-5)


def test_a_captioner_has_distances_of_its_image_encoder_only(tmp_path):
    # A 16-word caption has as many tokens as the 4x4 patch grid: the decoder's
    # self-attention is square and the same size, but it attends over words.
    model = shared(ImageCaptioner, channels=1, encoder="vit")
    inputs = {
        "images": random_images(1, channels=1),
        "decoder_token_ids": random_tokens(1, 16, 13),
    }
    callback = AttentionMapsCallback(inputs, log_dir=tmp_path)
    callback.set_model(model)

    callback.on_epoch_end(0)

    tags = events(tmp_path).Tags()
    distances = {tag.rsplit("/", 1)[0] for tag in tags["scalars"] if "distance" in tag}
    entropies = {tag.rsplit("/", 1)[0] for tag in tags["scalars"] if "entropy" in tag}
    assert distances == {"attention_distance/encoder_layer_0/self_attention"}
    assert len(entropies) == 1 + 2 * 2  # encoder, then self and cross per decoder
    assert tags["images"] == ["attention_rollout/example_0"]


def test_event_files_are_written_without_tensorflow(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` fails
        writer = EventFile("test", tmp_path / "attention")
        writer.write(3, scalars={"a/b": 0.25}, images={"c": np.eye(4, dtype="uint8")})
        writer.close()

    accumulator = events(tmp_path)
    assert [(e.step, e.value) for e in accumulator.Scalars("a/b")] == [(3, 0.25)]
    assert accumulator.Images("c")[0].width == 4


def test_without_tensorboard_the_error_says_what_to_install(tmp_path, monkeypatch):
    for name in list(sys.modules):
        if name == "tensorboard" or name.startswith("tensorboard."):
            monkeypatch.setitem(sys.modules, name, None)

    with pytest.raises(ImportError, match="pip install tensorboard"):
        AttentionMapsCallback(random_images(1, channels=1), log_dir=str(tmp_path))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"every_n_epochs": 0}, r"`every_n_epochs`.*positive integer.*received 0"),
        ({"every_n_epochs": "2"}, r"`every_n_epochs`.*received '2'"),
        ({"log_dir": None}, r"`log_dir` or `explorer_dir` must be given"),
        ({"log_dir": 3}, r"`log_dir`.*directory path.*received 3"),
        ({"diagnostics": ("entopy",)}, r"`diagnostics`.*'entropy'.*\('entopy',\)"),
        ({"diagnostics": ()}, r"`diagnostics`.*at least one.*received \(\)"),
        ({"tokens": ["a"]}, r"`tokens`.*without `explorer_dir`.*\['a'\]"),
        ({"inputs": None}, r"`inputs`.*received None"),
    ],
)
def test_bad_arguments_are_rejected_when_made(tmp_path, arguments, message):
    arguments = {"inputs": np.zeros((1, 8, 8, 1)), "log_dir": tmp_path, **arguments}

    with pytest.raises(ValueError, match="AttentionMapsCallback: argument " + message):
        AttentionMapsCallback(**arguments)
