"""`AttentionMapsCallback`: how a model's attention changes while it trains."""

import math
import os

import keras
import numpy as np

from keras_attn import _checks
from keras_attn.inspect._geometry import image_input
from keras_attn.inspect._geometry import image_self_attention
from keras_attn.inspect._geometry import image_tokens
from keras_attn.inspect._png import to_uint8
from keras_attn.inspect._tensorboard import EventFile
from keras_attn.inspect.distance import mean_attention_distance
from keras_attn.inspect.maps import compiled_maps
from keras_attn.inspect.rollout import attention_rollout
from keras_attn.inspect.rollout import class_token_map

DIAGNOSTICS = ("distance", "entropy", "rollout")
_OWNER = "AttentionMapsCallback"
_HEAT_MAP_PIXELS = 128  # rollout images are scaled up to at least this, by patch


class AttentionMapsCallback(keras.callbacks.Callback):
    """Logs attention diagnostics of fixed inputs every `every_n_epochs` epochs.

    At the end of epochs `N, 2N, ...` (counted from 1, `N = every_n_epochs`) the
    model is run once on `inputs` for their `attention_maps` (through a
    compiled function, traced at the first of those epochs like `predict`, so
    later ones cost one compiled forward pass) and the chosen `diagnostics` are
    written to TensorBoard, step = the epoch number:

    - `"distance"`: the mean attention distance in pixels
      (`mean_attention_distance`) of each head, as scalars
      `attention_distance/<layer path>/head_<h>`; for the self-attention layers
      over image patches only (a ViT's, an `ImageCaptioner`'s encoder);
    - `"entropy"`: the mean entropy in nats of each head's attention rows
      (over the examples and the query rows; all-zero rows, i.e. padded
      queries, are left out), as scalars `attention_entropy/<layer path>/head_<h>`;
      every attention layer;
    - `"rollout"`: for image models, the attention rollout of the image
      self-attention layers (`attention_rollout`): the class token's row on the
      patch grid (the mean over the patches' rows without a class token), as a
      grey image `attention_rollout/example_<i>` per example, brighter = more.

    The event files go to `os.path.join(log_dir, "attention")`, next to the
    `train/` and `validation/` of a `keras.callbacks.TensorBoard` given the same
    `log_dir`. They are written with the `tensorboard` package alone (no
    TensorFlow needed, on any backend). With `explorer_dir`, an explorer page
    (`keras_attn.inspect.explorer.explore`) is written for each of those
    epochs too, as `explorer_dir/epoch_<NNN>.html`.

    Args:
        inputs: what the model is called on (array, or dict of arrays), a
            few examples: the same ones every time.
        every_n_epochs: int. Write every this many epochs. Defaults to `1`.
        log_dir: path of the TensorBoard log directory, or `None`.
        explorer_dir: directory of the explorer pages, or `None`. At least one
            of `log_dir` and `explorer_dir` is needed.
        diagnostics: names among `"distance"`, `"entropy"`, `"rollout"` (or
            one of them) to write to `log_dir`; those that do not apply to the
            model (distance and rollout of a text model) are skipped.
            Defaults to all three.
        tokens: passed on to `explore` (the tokens' text); needs `explorer_dir`.
        images: passed on to `explore` (the images to show); needs
            `explorer_dir`.

    Raises:
        ValueError: bad arguments, at construction.
        ImportError: `log_dir` is given and `tensorboard` is not installed.

    Example:
    ```python
    log_dir = "logs/vit"
    model.fit(
        images,
        labels,
        epochs=20,
        callbacks=[
            keras.callbacks.TensorBoard(log_dir),
            keras_attn.inspect.AttentionMapsCallback(
                images[:8], every_n_epochs=5, log_dir=log_dir
            ),
        ],
    )
    # tensorboard --logdir logs/vit
    ```
    """

    def __init__(
        self,
        inputs,
        every_n_epochs=1,
        log_dir=None,
        explorer_dir=None,
        diagnostics=DIAGNOSTICS,
        tokens=None,
        images=None,
    ):
        super().__init__()
        if inputs is None:
            _checks.fail(_OWNER, "inputs", inputs, "the inputs of the model")
        self.inputs = inputs
        self.every_n_epochs = _checks.check_positive_int(
            _OWNER, "every_n_epochs", every_n_epochs
        )
        self.log_dir = _check_path("log_dir", log_dir)
        self.explorer_dir = _check_path("explorer_dir", explorer_dir)
        if self.log_dir is None and self.explorer_dir is None:
            raise ValueError(
                f"{_OWNER}: argument `log_dir` or `explorer_dir` must be given "
                "(where to write); received log_dir=None and explorer_dir=None."
            )
        self.diagnostics = _check_diagnostics(diagnostics, self.log_dir)
        for argument, value in (("tokens", tokens), ("images", images)):
            if value is not None and self.explorer_dir is None:
                expected = "None without `explorer_dir` (explorer pages only)"
                _checks.fail(_OWNER, argument, value, expected)
        self.tokens = tokens
        self.images = images
        self._events = None
        self._maps = None
        if self.log_dir is not None:
            self._events = EventFile(_OWNER, os.path.join(self.log_dir, "attention"))

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1  # Keras counts from 0
        if epoch % self.every_n_epochs:
            return
        if self._events is not None:
            scalars, images = self._summaries()
            self._events.write(epoch, scalars=scalars, images=images)
        if self.explorer_dir is not None:
            self._write_explorer_page(epoch)

    def on_train_end(self, logs=None):
        if self._events is not None:
            self._events.close()

    def _summaries(self):
        """`({tag: scalar}, {tag: uint8 image})` of the diagnostics, now."""
        model, maps_of = self._maps or (None, None)
        if model is not self.model:  # compiled once per model
            maps_of = compiled_maps(_OWNER, self.model)
            self._maps = (self.model, maps_of)
        maps = maps_of(self.inputs)
        patches, geometry = _image_self_attention(self.model, self.inputs, maps)
        scalars, images = {}, {}
        if "distance" in self.diagnostics and patches:
            distances = mean_attention_distance(patches, *geometry)
            for name, heads in distances.items():
                scalars.update(_per_head("attention_distance", name, heads))
        if "entropy" in self.diagnostics:
            for name, scores in maps.items():
                scalars.update(_per_head("attention_entropy", name, _entropy(scores)))
        if "rollout" in self.diagnostics and patches:
            for i, heat in enumerate(_rollout_images(patches, geometry)):
                images[f"attention_rollout/example_{i}"] = heat
        return scalars, images

    def _write_explorer_page(self, epoch):
        from keras_attn.inspect.explorer import explore

        path = os.path.join(self.explorer_dir, f"epoch_{epoch:03d}.html")
        explore(
            self.model, self.inputs, tokens=self.tokens, images=self.images, path=path
        )


def _check_path(argument, value):
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        _checks.fail(_OWNER, argument, value, "a directory path or None")
    return os.fspath(value)


def _check_diagnostics(diagnostics, log_dir):
    chosen = (diagnostics,) if isinstance(diagnostics, str) else diagnostics
    expected = "a list of names among " + ", ".join(map(repr, DIAGNOSTICS))
    if not isinstance(chosen, (list, tuple)) or not all(
        name in DIAGNOSTICS for name in chosen
    ):
        _checks.fail(_OWNER, "diagnostics", diagnostics, expected)
    if not chosen and log_dir is not None:
        expected += " (at least one: nothing else is written to `log_dir`)"
        _checks.fail(_OWNER, "diagnostics", diagnostics, expected)
    return tuple(dict.fromkeys(chosen))


def _per_head(kind, name, heads):
    return {f"{kind}/{name}/head_{h}": float(value) for h, value in enumerate(heads)}


def _entropy(scores):
    """Mean entropy in nats `(H,)` of the rows of `(B, H, T, S)` maps.

    All-zero rows (queries that attend nothing: padding) are left out.
    """
    scores = scores.astype("float64")
    logs = np.log(np.where(scores > 0, scores, 1.0))  # 0·log 0 = 0
    entropy = -(scores * logs).sum(axis=-1)  # (B, H, T)
    rows = scores.sum(axis=-1) > 0  # (B, H, T)
    return (entropy * rows).sum(axis=(0, 2)) / np.maximum(rows.sum(axis=(0, 2)), 1)


def _image_self_attention(model, inputs, maps):
    """`({path: maps}, ImageTokens)` of the self-attention over image patches.

    `({}, None)` when `inputs` hold no images `(B, H, W, C)` or the model's
    tokens are not patches. Decoder blocks attend over words, never patches,
    even when a caption has as many tokens as the image.
    """
    images = image_input(inputs)
    geometry = None if images is None else image_tokens(model, images.shape)
    if geometry is None:
        return {}, None
    patches = image_self_attention(model, maps, geometry)
    return patches, geometry


def _rollout_images(patches, geometry):
    """Grey uint8 heat maps, one per example, of the rollout on the patch grid."""
    rollout = attention_rollout(list(patches.values()))  # (B, T, T)
    grid, prefix = geometry.grid_shape, geometry.num_prefix_tokens
    if prefix:
        heat = class_token_map(rollout, grid, prefix)  # (B, gh, gw)
    else:  # no class token: where the patches, on average, draw from
        heat = rollout.mean(axis=1).reshape((-1,) + grid)
    height, width = (g * p for g, p in zip(grid, geometry.patch_size))
    scale = math.ceil(_HEAT_MAP_PIXELS / max(height, width))
    rows, cols = (p * scale for p in geometry.patch_size)
    return [to_uint8(h).repeat(rows, axis=0).repeat(cols, axis=1) for h in heat]
