"""An attention explorer: one self-contained HTML page per model and inputs.

`explore` runs the model once through `attention_maps` and writes a page with
three views: lines from each token to the tokens it attends (per layer and
head, as in bertviz), heat maps over the image for image models (a query
token's attention, or the rollout), and the ViT paper's diagnostics. The data
and the script are inline: the page opens from disk with no network.
"""

import base64
import html
import json
import pathlib

import numpy as np

from keras_attn.inspect._geometry import image_input
from keras_attn.inspect._geometry import image_self_attention
from keras_attn.inspect._geometry import image_tokens
from keras_attn.inspect._geometry import patch_embedding
from keras_attn.inspect._geometry import token_count
from keras_attn.inspect._png import png_data_uri
from keras_attn.inspect._png import to_uint8
from keras_attn.inspect._walk import describe
from keras_attn.inspect.distance import mean_attention_distance
from keras_attn.inspect.embeddings import patch_embedding_components
from keras_attn.inspect.embeddings import position_embedding_similarity
from keras_attn.inspect.maps import recorded_maps
from keras_attn.inspect.rollout import attention_rollout

# Each row of weights is stored as 8-bit fractions of the row's maximum.
LEVELS = 255
# Rows longer than this keep only their TOP_K strongest keys (with indices).
MAX_FULL_KEYS = 256
TOP_K = 32
_PAGE = pathlib.Path(__file__).parent / "explorer_page"
_TOKEN_INPUTS = {
    "encoder": ("encoder_token_ids", "token_ids"),
    "decoder": ("decoder_token_ids", "token_ids"),
}


class ExplorerPage:
    """The page `explore` made: its `html`, and where it was written (`path`).

    In Jupyter it displays inline (in an `<iframe>`, so its script runs apart
    from the notebook's).
    """

    def __init__(self, html_text, path=None):
        self.html = html_text
        self.path = path

    def save(self, path):
        """Write the page to `path` (parent folders created); returns the path."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html, encoding="utf-8")
        self.path = path
        return path

    def _repr_html_(self):
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
            'style="width: 100%; height: 760px; border: 0"></iframe>'
        )


def explore(
    model,
    inputs,
    tokens=None,
    images=None,
    path=None,
    layer=None,
    head=None,
    title=None,
):
    """Write an interactive page of every attention map of `model` on `inputs`.

    The model runs once through `attention_maps` (so every path, cache and mask
    behaves as in `predict`). The page has, for each example of the batch:
    - Tokens: bertviz-style lines from each query token to the keys it
      attends, per layer and head (or the mean of the heads); hovering a token
      isolates its lines. Encoder self-, decoder self- and cross-attention of a
      `Transformer` or `ImageCaptioner` each appear as a layer.
    - Image (image models): the attention of a chosen query token over the
      patches as a heat map on the image, and one small map per query (for an
      `ImageCaptioner`, per word of the caption over the image); for the
      encoder also the attention rollout (Abnar & Zuidema, 2020).
    - Diagnostics (image models): mean attention distance per head against
      depth and, for a `PatchEmbedding` (not a convolutional stem), the
      position-embedding similarity and the patch-embedding principal
      components (the ViT paper's Fig. 7).

    Weights are stored per row as 8-bit fractions of the row's maximum: a
    weight `w` of a row whose largest weight is `m` reads back within `m / 510`.
    Rows over `MAX_FULL_KEYS` (256) keys keep their `TOP_K` (32) strongest keys
    only, and the page says so. A 12-layer ViT-B/16 at 224 px (197 tokens)
    makes a page of about 8 MB per image.

    Args:
        model: a `keras.Model` or layer built from keras_attn layers.
        inputs: what `model` is called on (array, or dict of arrays).
        tokens: labels of the tokens, shown in the page. A list of strings
            (the same for every example) or a list of lists (one per example),
            for the model's text sequence; a dict `{"encoder": ..., "decoder":
            ...}` for a model with two. A list shorter than the sequence
            leaves the remaining (padding) positions blank, and the page
            draws nothing from those queries (padding masks keys, not
            queries: their rows still hold weights). Defaults to the token
            ids of `inputs`, and to `(row, column)` for image patches.
        images: `(B, height, width[, channels])` pictures to draw the heat maps
            on. Defaults to the model's image input; each is scaled by its own
            range.
        path: where to write the page (optional; see `ExplorerPage.save`).
        layer: the layer shown first: an index into the layers in the order
            they ran, or a path such as `"decoder_layer_1/cross_attention"`.
        head: the head shown first (an int), or `None` for the mean of heads.
        title: the page's title; defaults to the model's class and name.

    Returns:
        An `ExplorerPage` (`.html`, `.path`, `.save(path)`); it shows inline in
        Jupyter.

    Raises:
        ValueError: a model without keras_attn attention layers, `inputs` that
            do not fit it, labels or images that do not fit the maps, or a
            `layer` / `head` out of range.

    Example:
    ```python
    page = keras_attn.inspect.explore(vit, images[:4], path="vit_attention.html")
    page  # in Jupyter: the page itself
    ```
    """
    owner = "explore"
    maps = recorded_maps(owner, model, inputs)
    layers = [_layer_entry(name, scores) for name, scores in maps.items()]
    lengths = _sequence_lengths(layers)
    batch = next(iter(maps.values())).shape[0]
    pictures = _pictures(owner, model, inputs, images, batch)
    geometry = None if pictures is None else image_tokens(model, pictures.shape)
    if geometry is not None and lengths.get("encoder") != token_count(geometry):
        geometry = None  # the encoder does not attend over these images' patches
    data = {
        "title": title or describe(model),
        "examples": batch,
        "sequences": _sequences(owner, tokens, inputs, lengths, geometry, batch),
        "layers": [entry for entry, _ in layers],
        "initial": _initial(owner, layers, layer, head),
        "limits": {"levels": LEVELS, "maxFullKeys": MAX_FULL_KEYS, "topK": TOP_K},
    }
    if geometry is not None:
        patches = image_self_attention(model, maps, geometry)
        data["image"] = _image_data(patches, pictures, geometry)
        data["diagnostics"] = _diagnostics(model, patches, geometry)
    page = ExplorerPage(_render(data))
    if path is not None:
        page.save(path)
    return page


def encode_weights(scores):
    """`(..., S)` rows as the page stores them (see `explore`): a dict of base64."""
    scores = np.asarray(scores, dtype="float32")
    encoded = {}
    if scores.shape[-1] > MAX_FULL_KEYS:
        keys = np.argsort(-scores, axis=-1, kind="stable")[..., :TOP_K]
        scores = np.take_along_axis(scores, keys, axis=-1)
        encoded["keys"] = _base64(keys.astype("<u4"))
    scale = scores.max(axis=-1)  # (...,)
    # In float64, so that each level is the nearest one to the float32 weight.
    fraction = scores / np.where(scale > 0, scale, 1.0).astype("float64")[..., None]
    levels = fraction * LEVELS
    encoded["levels"] = _base64(np.round(levels).astype(np.uint8))
    encoded["scale"] = _base64(scale.astype("<f4"))
    return encoded


def _layer_entry(name, scores):
    """The page's record of one layer, and its `(B, H, T, S)` maps."""
    queries, keys = _roles(name)
    entry = {
        "name": name,
        "kind": "self" if queries == keys else "cross",
        "queries": queries,
        "keys": keys,
        "shape": list(scores.shape),
        "weights": encode_weights(scores),
    }
    return entry, scores


def _roles(name):
    """`(query sequence, key sequence)` of the attention layer at path `name`.

    Blocks below a `decoder...` path attend over the decoder's tokens, except
    their `cross_attention`, whose keys are the encoder's.
    """
    parts = name.split("/")
    stack = "decoder" if "decoder" in parts[0] else "encoder"
    cross = parts[-1].startswith("cross_attention")
    return stack, "encoder" if cross else stack


def _sequence_lengths(layers):
    lengths = {}
    for entry, _ in layers:
        _, _, queries, keys = entry["shape"]
        lengths.setdefault(entry["queries"], queries)
        lengths.setdefault(entry["keys"], keys)
    return lengths


def _pictures(owner, model, inputs, images, batch):
    """`images` (or the model's image input) as `(B, h, w, c)` floats, or None."""
    if images is None:
        images = image_input(inputs)
        if images is None:
            return None
    images = np.asarray(images, dtype="float32")
    if images.ndim == 3:
        images = images[..., None]
    if (
        images.ndim != 4
        or images.shape[0] != batch
        or images.shape[-1] not in (1, 3, 4)
    ):
        raise ValueError(
            f"{owner}: argument `images` must be {batch} pictures (B, height, "
            f"width[, 1 | 3 | 4 channels]) for the {batch} examples of `inputs`; "
            f"received shape {images.shape}."
        )
    return images


def _sequences(owner, tokens, inputs, lengths, geometry, batch):
    """`{"encoder": {"labels": [[str] * T] * B, "image": bool}, ...}`."""
    image_sequence = "encoder" if geometry is not None else None
    text = [name for name in lengths if name != image_sequence]
    if tokens is not None and not isinstance(tokens, dict):
        if len(text) != 1:
            raise ValueError(
                f"{owner}: argument `tokens` must be a dict with the keys "
                f"{text} for a model with {len(text)} text sequences; received "
                f"a {type(tokens).__name__}."
            )
        tokens = {text[0]: tokens}
    tokens = dict(tokens or {})
    unknown = sorted(set(tokens) - set(text))
    if unknown:
        raise ValueError(
            f"{owner}: argument `tokens` has keys {unknown} that are not text "
            f"sequences of the model; expected some of {text}."
        )
    sequences = {}
    for name, length in lengths.items():
        if name == image_sequence:
            labels = [_patch_labels(geometry)] * batch
        elif name in tokens:
            labels = _given_labels(owner, tokens[name], name, batch, length)
        else:
            labels = _default_labels(inputs, name, batch, length)
        sequences[name] = {"labels": labels, "image": name == image_sequence}
    return sequences


def _patch_labels(geometry):
    prefix = ["[CLS]"] + [f"[P{i}]" for i in range(1, geometry.num_prefix_tokens)]
    rows, columns = geometry.grid_shape
    patches = [f"({r}, {c})" for r in range(rows) for c in range(columns)]
    return prefix[: geometry.num_prefix_tokens] + patches


def _given_labels(owner, labels, name, batch, length):
    if labels and all(isinstance(label, str) for label in labels):
        labels = [labels] * batch
    if len(labels) != batch or not all(
        isinstance(row, (list, tuple)) and all(isinstance(t, str) for t in row)
        for row in labels
    ):
        raise ValueError(
            f"{owner}: argument `tokens` for the {name} must be a list of "
            f"strings or a list of {batch} lists of strings (one per example); "
            f"received {labels!r:.120}."
        )
    for row in labels:
        if len(row) > length:
            raise ValueError(
                f"{owner}: argument `tokens` for the {name} has {len(row)} labels "
                f"but the {name} sequence has {length} tokens; received {row!r:.120}."
            )
    return [list(row) + [""] * (length - len(row)) for row in labels]


def _default_labels(inputs, name, batch, length):
    for key in _TOKEN_INPUTS[name]:
        ids = inputs.get(key) if isinstance(inputs, dict) else None
        if ids is not None and np.shape(ids) == (batch, length):
            return [[str(int(i)) for i in row] for row in np.asarray(ids)]
    return [[str(i) for i in range(length)]] * batch


def _initial(owner, layers, layer, head):
    names = [entry["name"] for entry, _ in layers]
    if layer is None:
        index = 0
    elif isinstance(layer, str) and layer in names:
        index = names.index(layer)
    elif (
        isinstance(layer, int)
        and not isinstance(layer, bool)
        and 0 <= layer < len(names)
    ):
        index = layer
    else:
        raise ValueError(
            f"{owner}: argument `layer` must be an index below {len(names)} or "
            f"one of {names}; received {layer!r}."
        )
    heads = layers[index][0]["shape"][1]
    if head is not None and (
        not isinstance(head, int) or isinstance(head, bool) or not 0 <= head < heads
    ):
        raise ValueError(
            f"{owner}: argument `head` must be None (the mean of the heads) or "
            f"an int in [0, {heads}) for layer {names[index]!r}; received {head!r}."
        )
    return {"layer": index, "head": head}


def _image_data(patches, pictures, geometry):
    """Pictures, patch grid and the rollout of the image self-attention."""
    image = {
        "grid": list(geometry.grid_shape),
        "prefix": geometry.num_prefix_tokens,
        "pictures": [png_data_uri(to_uint8(picture)) for picture in pictures],
    }
    if patches:
        image["rollout"] = encode_weights(attention_rollout(patches))
    return image


def _diagnostics(model, patches, geometry):
    diagnostics = {}
    if patches:
        distances = mean_attention_distance(
            patches,
            geometry.grid_shape,
            geometry.patch_size,
            geometry.num_prefix_tokens,
        )
        diagnostics["distance"] = {
            "layers": list(distances),
            "values": [np.round(d, 3).tolist() for d in distances.values()],
        }
    layer = patch_embedding(model)  # a convolutional stem has no filters to show
    if layer is not None and layer.position_embedding == "learned":
        similarity = position_embedding_similarity(layer)
        diagnostics["positionSimilarity"] = {
            "grid": list(similarity.shape[:2]),
            "values": np.round(similarity, 3).ravel().tolist(),
        }
    if layer is not None:
        components, ratios = patch_embedding_components(layer)
        diagnostics["patchComponents"] = {
            "pictures": [png_data_uri(to_uint8(c)) for c in components],
            "ratios": np.round(ratios, 4).tolist(),
        }
    return diagnostics


def _render(data):
    # `</` inside the JSON would end the <script> element early.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = (_PAGE / "page.html").read_text(encoding="utf-8")
    return (
        page.replace("{{title}}", html.escape(data["title"]))
        .replace("/*{{style}}*/", (_PAGE / "page.css").read_text(encoding="utf-8"))
        .replace("/*{{script}}*/", (_PAGE / "page.js").read_text(encoding="utf-8"))
        .replace("{{data}}", payload)
    )


def _base64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
