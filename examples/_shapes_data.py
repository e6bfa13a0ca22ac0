"""Captioned images of two coloured shapes, drawn with NumPy (nothing downloaded).

Each 32×32 RGB image holds a large and a small shape (circle, square or triangle;
red, green, blue or yellow) side by side or one above the other, on a dark noisy
background. The caption names the large shape first, then where it is relative to
the small one:

    "a red circle to the left of a blue square"
    "a yellow triangle below a yellow triangle"

so every image has exactly one correct caption (3 shapes × 4 colours × 4
relations × 3 × 4 = 576 captions). Captions are tokenised with a fixed word-level
vocabulary: `[PAD]` (0), `[START]` (1), `[END]` (2), then the words.
"""

import numpy as np

IMAGE_SIZE = 32
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (0.9, 0.15, 0.1),
    "green": (0.1, 0.75, 0.2),
    "blue": (0.15, 0.3, 1.0),
    "yellow": (0.95, 0.85, 0.1),
}
# Where the large shape is relative to the small one: (words, axis, sign), with
# axis 0 = x (columns), 1 = y (rows, downwards).
RELATIONS = {
    "left": ("to the left of", 0, -1),
    "right": ("to the right of", 0, 1),
    "above": ("above", 1, -1),
    "below": ("below", 1, 1),
}
PAD, START, END = "[PAD]", "[START]", "[END]"
VOCABULARY = (PAD, START, END, "a", "to", "the", "of", "left", "right")
VOCABULARY += ("above", "below", *COLOURS, *SHAPES)
TOKEN_IDS = {word: i for i, word in enumerate(VOCABULARY)}
PADDING_ID, START_ID, END_ID = TOKEN_IDS[PAD], TOKEN_IDS[START], TOKEN_IDS[END]
# "[START] a red circle to the left of a blue square [END]"
MAX_LENGTH = 12

# Pixel centres, broadcast against (N, 1, 1) shape parameters.
_Y, _X = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5
_LARGE_RADIUS = (6.5, 8.0)
_SMALL_RADIUS = (4.0, 5.5)
_CHUNK = 1000  # images drawn at once


def _masks(shape_ids, cx, cy, r):
    """Boolean (N, 32, 32) masks; shape `SHAPES[shape_ids[n]]` at (cx, cy)."""
    cx, cy, r = (np.asarray(v)[:, None, None] for v in (cx, cy, r))
    dx, dy = _X - cx, _Y - cy
    circle = dx**2 + dy**2 <= r**2
    square = np.maximum(np.abs(dx), np.abs(dy)) <= 0.9 * r  # about the same area
    # An upward triangle: apex at cy - r, base at cy + 0.8 r.
    triangle = (dy >= -r) & (dy <= 0.8 * r) & (np.abs(dx) <= 0.6 * (dy + r))
    return np.choose(shape_ids[:, None, None], [circle, square, triangle])


def _centres(rng, relation_ids, r_large, r_small):
    """(N, 2) x, y centres of the large and small shapes showing the relations."""
    n = len(relation_ids)
    relations = [RELATIONS[name] for name in RELATIONS]
    axis = np.array([relations[i][1] for i in relation_ids])
    sign = np.array([relations[i][2] for i in relation_ids])
    # Along the axis: at least 2 pixels between the shapes, both inside.
    gap = rng.uniform(r_large + r_small + 2, IMAGE_SIZE - r_large - r_small)
    first = np.where(sign < 0, r_large, r_small)  # the shape nearer 0
    second = np.where(sign < 0, r_small, r_large)
    low = rng.uniform(first, IMAGE_SIZE - second - gap)
    along_large = np.where(sign < 0, low, low + gap)
    along_small = np.where(sign < 0, low + gap, low)
    # Across it: nearly aligned, at most 4 pixels apart.
    across_large = rng.uniform(r_large, IMAGE_SIZE - r_large)
    across_small = np.clip(
        across_large + rng.uniform(-4, 4, n), r_small, IMAGE_SIZE - r_small
    )
    rows = np.arange(n)
    large, small = np.empty((n, 2)), np.empty((n, 2))
    large[rows, axis], large[rows, 1 - axis] = along_large, across_large
    small[rows, axis], small[rows, 1 - axis] = along_small, across_small
    return large, small


def _draw(rng, num_images):
    """`num_images` random images (float32) and their captions."""
    n = num_images
    colours = rng.integers(len(COLOURS), size=(2, n))  # large, small
    shapes = rng.integers(len(SHAPES), size=(2, n))
    relation_ids = rng.integers(len(RELATIONS), size=n)
    radii = rng.uniform(*_LARGE_RADIUS, n), rng.uniform(*_SMALL_RADIUS, n)
    centres = _centres(rng, relation_ids, *radii)
    palette = np.array(list(COLOURS.values()))
    images = 0.08 + 0.04 * rng.standard_normal((n, IMAGE_SIZE, IMAGE_SIZE, 3))
    for colour, shape, (cx, cy), r in zip(
        colours, shapes, [c.T for c in centres], radii
    ):
        rgb = np.clip(palette[colour] + rng.uniform(-0.08, 0.08, (n, 3)), 0, 1)
        inside = _masks(shape, cx, cy, r)[..., None]  # (N, 32, 32, 1)
        images = np.where(inside, rgb[:, None, None, :], images)
    names, relations = list(COLOURS), list(RELATIONS)
    captions = [
        caption(
            (names[colours[0, i]], SHAPES[shapes[0, i]]),
            (names[colours[1, i]], SHAPES[shapes[1, i]]),
            relations[relation_ids[i]],
        )
        for i in range(n)
    ]
    return np.clip(images, 0.0, 1.0).astype("float32"), captions


def caption(large, small, relation):
    """`"a red circle to the left of a blue square"`."""
    words = RELATIONS[relation][0]
    return f"a {large[0]} {large[1]} {words} a {small[0]} {small[1]}"


def tokenize(captions):
    """`(N, MAX_LENGTH)` int32: `[START]`, the words, `[END]`, then padding."""
    ids = np.full((len(captions), MAX_LENGTH), PADDING_ID, dtype="int32")
    for row, text in enumerate(captions):
        tokens = [START_ID, *(TOKEN_IDS[w] for w in text.split()), END_ID]
        ids[row, : len(tokens)] = tokens
    return ids


def detokenize(ids):
    """The words between `[START]` and `[END]` of each row of token ids."""
    texts = []
    for row in np.asarray(ids):
        words = []
        for token in row[1:]:
            if token in (END_ID, PADDING_ID):
                break
            words.append(VOCABULARY[token])
        texts.append(" ".join(words))
    return texts


def make_dataset(num_images, seed):
    """`(images (N, 32, 32, 3) float32 in [0, 1], captions: list of str)`."""
    rng = np.random.default_rng(seed)
    chunks = [
        _draw(rng, min(_CHUNK, num_images - start))
        for start in range(0, num_images, _CHUNK)
    ]
    images = np.concatenate([images for images, _ in chunks])
    return images, [text for _, captions in chunks for text in captions]
