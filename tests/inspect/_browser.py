"""Explorer pages in headless Chromium, driven by Playwright.

Used by the browser tests, and as `python -m tests.inspect._browser PAGE.html
OUT_DIR` to screenshot every view of a page (the docs' pictures).
"""

import contextlib
import os
import pathlib
import shutil
import sys

CHROMIUM = os.environ.get("KERAS_ATTN_CHROMIUM") or shutil.which("chromium")
# As root in a closed network: no sandbox, and no background connections (they
# are refused here, many at a time).
ARGUMENTS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWS = ("tokens", "image", "diagnostics")


def missing():
    """Why no browser test can run here, or None."""
    if CHROMIUM is None:
        return "no Chromium: apt-get install chromium (or set KERAS_ATTN_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no Playwright: pip install playwright (the `test` extra)"
    return None


@contextlib.contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGUMENTS)
        try:
            yield browser
        finally:
            browser.close()


class ExplorerTab:
    """One page in a tab; `errors` collects console errors and exceptions."""

    def __init__(self, browser, path):
        self.page = browser.new_page(viewport={"width": 1100, "height": 800})
        self.errors = []
        self.page.on(
            "console",
            lambda message: (
                message.type == "error" and self.errors.append(message.text)
            ),
        )
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(pathlib.Path(path).resolve().as_uri())
        self.wait()

    def wait(self):
        self.page.wait_for_selector("body[data-drawn]", state="attached")

    def views(self):
        return [v for v in VIEWS if self.page.query_selector(f"#view-{v}")]

    def show(self, view):
        self.page.click(f"#view-{view}")
        self.page.wait_for_selector(f"body[data-drawn^='{view}:']", state="attached")

    def choose(self, control, value):
        """Pick `value` in the `<select>` `#control` and wait for the redraw."""
        self.page.select_option(f"#{control}", str(value))
        self.wait()

    def tick(self, control):
        self.page.check(f"#{control}")
        self.wait()

    def lines(self):
        """`{(query, key): weight}` of the lines drawn in the tokens view."""
        return {
            (int(q), int(k)): float(w)
            for q, k, w in self.page.eval_on_selector_all(
                "#token-lines line",
                "lines => lines.map(l => [l.dataset.query, l.dataset.key,"
                " l.dataset.weight])",
            )
        }

    def heat_map(self):
        """The patch weights drawn on the image view's large canvas."""
        return self.page.eval_on_selector(
            "#heat-map", "canvas => JSON.parse(canvas.dataset.weights)"
        )

    def distances(self):
        """`{(layer, head): pixels}` of the dots of the attention-distance plot."""
        return {
            (layer, int(head)): float(d)
            for layer, head, d in self.page.eval_on_selector_all(
                "#attention-distance circle",
                "dots => dots.map(c => [c.dataset.layer, c.dataset.head,"
                " c.dataset.distance])",
            )
        }

    def screenshot(self, path):
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)


def screenshot_views(page_path, out_dir, name=None):
    """Screenshot each view of a page into `out_dir/<name>_<view>.png`."""
    name = name or pathlib.Path(page_path).stem
    with chromium() as browser:
        tab = ExplorerTab(browser, page_path)
        for view in tab.views():
            tab.show(view)
            tab.screenshot(pathlib.Path(out_dir) / f"{name}_{view}.png")
        if tab.errors:
            raise RuntimeError(f"{page_path}: {tab.errors}")


if __name__ == "__main__":
    screenshot_views(*sys.argv[1:])
