"""PNG pictures of attention maps and ViT diagnostics, drawn with matplotlib.

matplotlib is imported only when a function here is called (`pip install
keras-attn[plot]`). Figures are drawn on their own canvas: pyplot's global state
and backend are left alone.
"""

import math
import os

import numpy as np


def plot_attention_on_images(
    images, heatmaps, path, titles=None, columns=8, alpha=0.55, cmap="inferno"
):
    """Heat maps (e.g. `class_token_map` of a rollout) over their images.

    Each heat map is stretched over its image (bilinear) and scaled to its own
    maximum, so the picture shows where, not how much.

    Args:
        images: `(B, height, width)` or `(B, height, width, channels)`; grey
            when there is one channel, RGB in [0, 1] when there are three.
        heatmaps: `(B, grid_h, grid_w)`, non-negative.
        path: the PNG file to write.
        titles: optional list of `B` strings.
        columns: images per row.
        alpha: opacity of the heat map.
        cmap: matplotlib colour map of the heat map.

    Returns:
        `path`.

    Example:
    ```python
    heat = keras_attn.inspect.class_token_map(rollout, (4, 4))
    keras_attn.inspect.plot_attention_on_images(images, heat, "rollout.png")
    ```
    """
    images, heatmaps = np.asarray(images), np.asarray(heatmaps)
    owner = "plot_attention_on_images"
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or heatmaps.ndim != 3:
        raise ValueError(
            f"{owner}: arguments `images` (B, H, W[, C]) and `heatmaps` (B, gh, gw) "
            f"have the wrong rank; received shapes {images.shape} and "
            f"{heatmaps.shape}."
        )
    if len(images) != len(heatmaps):
        raise ValueError(
            f"{owner}: argument `heatmaps` must have one map per image "
            f"({len(images)}); received {len(heatmaps)}."
        )
    figure, axes = _thumbnails(len(images), columns, (1.6, 1.75))
    height, width = images.shape[1:3]
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    for index, axis in enumerate(axes):
        axis.imshow(images[index], cmap="gray" if images.ndim == 3 else None)
        heat = heatmaps[index] / max(float(heatmaps[index].max()), 1e-12)
        axis.imshow(
            heat,
            cmap=cmap,
            alpha=alpha,
            extent=extent,
            interpolation="bilinear",
            vmin=0.0,
            vmax=1.0,
        )
        if titles is not None:
            axis.set_title(str(titles[index]), fontsize=8)
    return _save(figure, path)


def plot_token_attention(
    scores, path, query_tokens=None, key_tokens=None, title=None, cmap="viridis"
):
    """An attention matrix `(T, S)` with its tokens along the axes.

    For translation (decoder tokens × source tokens in cross-attention) or
    captions (caption tokens × image patches).

    Args:
        scores: `(T, S)`, e.g. `maps[name][0].mean(axis=0)` (one image, heads
            averaged) or one head `maps[name][0, h]`.
        path: the PNG file to write.
        query_tokens: optional `T` labels of the rows (queries).
        key_tokens: optional `S` labels of the columns (keys).
        title: optional title.
        cmap: matplotlib colour map.

    Returns:
        `path`.

    Example:
    ```python
    cross = maps["decoder_layer_0/cross_attention"][0].mean(axis=0)
    plot_token_attention(cross, "cross.png", target_words, source_words)
    ```
    """
    owner = "plot_token_attention"
    scores = _array(owner, "scores", scores, "(T, S)")
    for argument, labels, size in (
        ("query_tokens", query_tokens, scores.shape[0]),
        ("key_tokens", key_tokens, scores.shape[1]),
    ):
        if labels is not None and len(labels) != size:
            raise ValueError(
                f"{owner}: argument `{argument}` must have {size} labels to match "
                f"`scores` of shape {scores.shape}; received {len(labels)}."
            )
    rows, cols = scores.shape
    size = (max(3.0, 0.35 * cols + 1.5), max(2.5, 0.35 * rows + 1.0))
    figure, (axis,) = _subplots(1, 1, size)
    image = axis.imshow(scores, cmap=cmap, vmin=0.0, aspect="auto")
    figure.colorbar(image, ax=axis, fraction=0.04)
    if key_tokens is not None:
        axis.set_xticks(range(cols), [str(t) for t in key_tokens], rotation=90)
    if query_tokens is not None:
        axis.set_yticks(range(rows), [str(t) for t in query_tokens])
    axis.set_xlabel("key")
    axis.set_ylabel("query")
    if title:
        axis.set_title(title, fontsize=9)
    return _save(figure, path)


def plot_attention_distance(distances, path, title="Mean attention distance"):
    """Mean attention distance of every head against depth (ViT Fig. 7, right).

    Args:
        distances: the dict from `mean_attention_distance` (layer name →
            `(H,)`), first layer first.
        path: the PNG file to write.
        title: title of the plot.

    Returns:
        `path`.

    Example:
    ```python
    distances = mean_attention_distance(maps, (4, 4), patch_size=2)
    plot_attention_distance(distances, "distance.png")
    ```
    """
    figure, (axis,) = _subplots(1, 1, (4.2, 3.2))
    means = []
    for depth, heads in enumerate(distances.values(), start=1):
        heads = np.asarray(heads)
        axis.scatter(np.full(len(heads), depth), heads, s=18, alpha=0.7)
        means.append(float(heads.mean()))
    depths = range(1, len(means) + 1)
    axis.plot(
        depths,
        means,
        color="black",
        marker="_",
        markersize=14,
        lw=1,
        label="mean over heads",
    )
    axis.set_xticks(list(depths))
    axis.set_xlabel("network depth (layer)")
    axis.set_ylabel("mean attention distance (pixels)")
    axis.set_ylim(bottom=0)
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title(title, fontsize=9)
    return _save(figure, path)


def plot_position_similarity(similarity, path, title="Position embedding similarity"):
    """The grid of grids of `position_embedding_similarity` (ViT Fig. 7, centre).

    Args:
        similarity: `(grid_h, grid_w, grid_h, grid_w)` cosine similarities.
        path: the PNG file to write.
        title: title of the figure.

    Returns:
        `path`.

    Example:
    ```python
    plot_position_similarity(position_embedding_similarity(vit), "pos.png")
    ```
    """
    owner = "plot_position_similarity"
    similarity = _array(owner, "similarity", similarity, "(gh, gw, gh, gw)")
    grid_h, grid_w = similarity.shape[:2]
    figure, axes = _subplots(grid_h, grid_w, (0.8 * grid_w + 1.2, 0.8 * grid_h + 0.4))
    for index, axis in enumerate(axes):
        row, col = divmod(index, grid_w)
        image = axis.imshow(similarity[row, col], cmap="viridis", vmin=-1, vmax=1)
        axis.set_xticks([])
        axis.set_yticks([])
        if col == 0:
            axis.set_ylabel(str(row + 1), fontsize=8)
        if row == grid_h - 1:
            axis.set_xlabel(str(col + 1), fontsize=8)
    figure.colorbar(image, ax=list(axes), fraction=0.03, label="cosine similarity")
    figure.text(0.02, 0.5, "input patch row", rotation=90, va="center", fontsize=8)
    figure.text(0.45, 0.01, "input patch column", ha="center", fontsize=8)
    figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def plot_patch_components(
    components,
    path,
    ratios=None,
    columns=7,
    title="Principal components of the patch embedding",
):
    """The filters' principal components as small images (ViT Fig. 7, left).

    Args:
        components: `(k, ph, pw, channels)` from `patch_embedding_components`.
        path: the PNG file to write.
        ratios: optional `(k,)` explained variance ratios, shown as titles.
        columns: components per row.
        title: title of the figure.

    Returns:
        `path`.

    Example:
    ```python
    components, ratios = patch_embedding_components(vit)
    plot_patch_components(components, "filters.png", ratios)
    ```
    """
    owner = "plot_patch_components"
    components = _array(owner, "components", components, "(k, ph, pw, channels)")
    figure, axes = _thumbnails(len(components), columns, (1.3, 1.45), title=0.4)
    for index, axis in enumerate(axes):
        component = components[index]
        if component.shape[-1] == 3:  # RGB: stretch to [0, 1] for display
            low, high = component.min(), component.max()
            axis.imshow((component - low) / max(high - low, 1e-12))
        else:
            bound = max(float(np.abs(component).max()), 1e-12)
            axis.imshow(component[..., 0], cmap="RdBu_r", vmin=-bound, vmax=bound)
        if ratios is not None:
            axis.set_title(f"{100 * ratios[index]:.0f}%", fontsize=8)
    figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def _array(owner, argument, value, layout):
    """`value` as a NumPy array of the rank of `layout`, e.g. `"(T, S)"`."""
    array = np.asarray(value)
    if array.ndim != len(layout.split(",")):
        raise ValueError(
            f"{owner}: argument `{argument}` must have shape {layout}; received "
            f"shape {array.shape}."
        )
    return array


def _thumbnails(count, columns, cell_size, title=0.0):
    """A figure of `count` small pictures, `columns` a row, each `cell_size`
    (width, height) inches, with `title` inches more for a title.

    Returns the figure and the `count` axes, in reading order; every cell of
    the grid, the empty ones too, is drawn without ticks or frame.
    """
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    width, height = cell_size
    figure, axes = _subplots(rows, columns, (width * columns, height * rows + title))
    for axis in axes:
        axis.set_axis_off()
    return figure, axes[:count]


def _subplots(rows, columns, size):
    """A detached figure and its axes, flattened."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "keras_attn.inspect plots need matplotlib: pip install 'keras-attn[plot]'."
        ) from error
    figure = Figure(figsize=size, dpi=110)
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, list(axes.ravel())


def _save(figure, path):
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path
