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

# Pixel centres, shared by every drawing.
_Y, _X = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5
_LARGE_RADIUS = (6.5, 8.0)
_SMALL_RADIUS = (4.0, 5.5)


def _mask(shape, cx, cy, r):
    """Boolean (32, 32) mask of one shape centred at (cx, cy), "radius" r."""
    dx, dy = _X - cx, _Y - cy
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":  # about the circle's area
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.9 * r
    # An upward triangle: apex at cy - r, base at cy + 0.8 r.
    return (dy >= -r) & (dy <= 0.8 * r) & (np.abs(dx) <= 0.6 * (dy + r))


def _centres(rng, relation, r_large, r_small):
    """Centres of the large and small shape that make `relation` unambiguous."""
    _, axis, sign = RELATIONS[relation]
    # Along the axis: at least 2 pixels between the shapes, both inside.
    gap = rng.uniform(r_large + r_small + 2, IMAGE_SIZE - r_large - r_small)
    first, second = (r_large, r_small) if sign < 0 else (r_small, r_large)
    low = rng.uniform(first, IMAGE_SIZE - second - gap)
    along_large = low if sign < 0 else low + gap
    along_small = low + gap if sign < 0 else low
    # Across it: nearly aligned, at most 4 pixels apart.
    across = rng.uniform(r_large, IMAGE_SIZE - r_large)
    across_small = np.clip(across + rng.uniform(-4, 4), r_small, IMAGE_SIZE - r_small)
    large, small = np.empty(2), np.empty(2)
    large[axis], large[1 - axis] = along_large, across
    small[axis], small[1 - axis] = along_small, across_small
    return large, small


def draw(rng, large, small, relation):
    """One float32 image (32, 32, 3); `large`, `small` are (colour, shape)."""
    r_large = rng.uniform(*_LARGE_RADIUS)
    r_small = rng.uniform(*_SMALL_RADIUS)
    centres = _centres(rng, relation, r_large, r_small)
    image = 0.08 + 0.04 * rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE, 3))
    for (colour, shape), (cx, cy), r in zip(
        (large, small), centres, (r_large, r_small)
    ):
        rgb = np.clip(np.array(COLOURS[colour]) + rng.uniform(-0.08, 0.08, 3), 0, 1)
        image[_mask(shape, cx, cy, r)] = rgb
    return np.clip(image, 0.0, 1.0).astype("float32")


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
    colours, relations = list(COLOURS), list(RELATIONS)
    images, captions = [], []
    for _ in range(num_images):
        large = (colours[rng.integers(4)], SHAPES[rng.integers(3)])
        small = (colours[rng.integers(4)], SHAPES[rng.integers(3)])
        relation = relations[rng.integers(4)]
        images.append(draw(rng, large, small, relation))
        captions.append(caption(large, small, relation))
    return np.stack(images), captions
