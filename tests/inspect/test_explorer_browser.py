"""The explorer page in a real browser (headless Chromium): what it draws.

Each test opens a page written by `explore`, picks layers, heads, examples and
queries in its controls, and reads the drawn weights back from the DOM: they
must be `attention_maps`' weights to the page's quantisation.
"""

import functools
import os

import numpy as np
import pytest

from keras_attn import inspect
from tests.inspect import _browser
from tests.inspect.test_explorer import CASES
from tests.inspect.test_explorer import explored

pytestmark = pytest.mark.skipif(
    _browser.missing() is not None, reason=str(_browser.missing())
)


@pytest.fixture(scope="module")
def browser():
    with _browser.chromium() as chromium:
        yield chromium


@functools.cache
def written(case, folder):
    """The case's maps and the path of its page (written once per process)."""
    maps, page = explored(case)
    return maps, page.save(os.path.join(folder, f"{case}.html"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(tmp_path_factory.mktemp("explorer"))


def drawn_bound(scores, head):
    """How far a drawn weight may be from the map: the page's 8-bit levels
    (half a level of each averaged head's row maximum), the float32 array it
    decodes into and the six significant digits it writes into the DOM."""
    heads = scores if head is None else scores[head : head + 1]
    half_level = heads.max(axis=-1).mean(axis=0)[:, None] * 0.5 / 255
    return half_level * (1 + 1e-6) + 1e-5 * np.abs(heads.mean(axis=0)) + 1e-9


def assert_lines_show(lines, scores, head):
    """Every drawn line has the head's (or mean's) weight; none is missing."""
    expected = scores.mean(axis=0) if head is None else scores[head]  # (T, S)
    bound = drawn_bound(scores, head)
    drawn = np.zeros_like(expected)
    for (query, key), weight in lines.items():
        drawn[query, key] = weight
    np.testing.assert_array_less(np.abs(drawn - expected), bound)


@pytest.mark.parametrize("case", sorted(CASES))
def test_choosing_a_layer_head_and_example_draws_their_weights(browser, folder, case):
    maps, path = written(case, folder)
    names = list(maps)
    tab = _browser.ExplorerTab(browser, path)

    assert_lines_show(tab.lines(), maps[names[0]][0], head=None)
    last = len(names) - 1
    tab.choose("layer", last)
    tab.choose("head", 1)
    assert_lines_show(tab.lines(), maps[names[last]][0], head=1)
    tab.choose("example", 1)
    assert_lines_show(tab.lines(), maps[names[last]][1], head=1)

    assert tab.errors == []


@pytest.mark.parametrize("case", ["vit", "captioner"])
def test_image_view_draws_a_query_over_the_patches(browser, folder, case):
    maps, path = written(case, folder)
    names = list(maps)
    layer = len(names) - 1  # the ViT's last layer; the captioner's cross-attention
    prefix = 1 if case == "vit" else 0
    tab = _browser.ExplorerTab(browser, path)

    tab.choose("layer", layer)
    tab.choose("head", 0)
    tab.show("image")
    tab.choose("query", 2)

    scores = maps[names[layer]][0, :1, 2:3]  # (1, 1, S): head 0, query 2
    drawn = np.asarray(tab.heat_map())
    bound = drawn_bound(scores, head=0)[0, prefix:]
    np.testing.assert_array_less(np.abs(drawn - scores[0, 0, prefix:]), bound)
    assert tab.errors == []


def test_image_view_draws_the_rollout_and_diagnostics_their_distances(browser, folder):
    maps, path = written("vit", folder)
    tab = _browser.ExplorerTab(browser, path)

    tab.show("image")
    tab.tick("rollout")
    rollout = inspect.attention_rollout(maps)[0, :1]  # (1, T): the class token
    drawn = np.asarray(tab.heat_map())
    bound = drawn_bound(rollout[None], head=0)[0, 1:]
    np.testing.assert_array_less(np.abs(drawn - rollout[0, 1:]), bound)

    tab.show("diagnostics")
    distances = inspect.mean_attention_distance(maps, (4, 4), 2)
    expected = {(n, h): d for n, row in distances.items() for h, d in enumerate(row)}
    drawn = tab.distances()
    assert drawn.keys() == expected.keys()
    np.testing.assert_allclose(
        [drawn[k] for k in expected], list(expected.values()), atol=5e-4
    )
    assert tab.errors == []


def test_every_view_renders_and_is_screenshotted(browser, folder, tmp_path):
    # Screenshots go to KERAS_ATTN_SCREENSHOTS when it is set (docs/images/explorer
    # for the docs page), otherwise next to the test's pages.
    out = os.environ.get("KERAS_ATTN_SCREENSHOTS") or str(tmp_path)
    for case in sorted(CASES):
        _, path = written(case, folder)
        tab = _browser.ExplorerTab(browser, path)
        for view in tab.views():
            tab.show(view)
            shot = os.path.join(out, f"{case}_{view}.png")
            tab.screenshot(shot)
            with open(shot, "rb") as file:
                assert file.read(8) == b"\x89PNG\r\n\x1a\n"
        expected = (
            ["tokens", "image", "diagnostics"] if case != "transformer" else ["tokens"]
        )
        assert tab.views() == expected
        assert tab.errors == []
