"""Run Keras' and keras-hub's own test files against our layers.

A peer test file is executed from where its package keeps it, as a private module
in which the name of the peer layer is rebound to ours; its `TestCase` is then
subclassed, so pytest runs every one of its tests on the active backend. Nothing of
the peer files is copied into this repository.

Keras' wheel ships its tests. keras-hub's wheel and sdist do not: point
`KERAS_HUB_SOURCE` at a keras-hub checkout (the folder holding `keras_hub/`) to run
them; without one, each keras-hub suite is a single skipped test that names the
missing file. keras-hub's harness (`keras_hub/src/tests/test_case.py`) imports the
`grain` package; without it the suites skip with that import error.

A test that fails because one of our arguments or contracts deliberately differs is
a strict expected failure that must raise the named exception: a difference that
goes away (XPASS) or a failure of another kind fails the run, so the table of
differences cannot go stale and cannot hide a bug. `docs/migration.md` explains each
difference to users.
"""

import dataclasses
import functools
import importlib.util
import os
import pathlib
import sys
import types
import unittest

import pytest

KERAS_HUB_SOURCE = "KERAS_HUB_SOURCE"


@dataclasses.dataclass(frozen=True)
class Difference:
    """Why a peer test fails on our layer, and the exception it fails with."""

    raises: type
    reason: str


@dataclasses.dataclass(frozen=True)
class PeerSuite:
    """One peer test file, its test case and the names rebound to our layers.

    `replace` maps a module-level name of the test file to its new value, or to a
    `Rebind` of the module the name holds.
    """

    package: str
    path: str
    test_case: str
    replace: dict

    def locations(self):
        """Where the file may be: the installed package, then a source checkout."""
        package = importlib.util.find_spec(self.package)
        yield pathlib.Path(package.origin).parent / self.path
        if self.package == "keras_hub" and os.environ.get(KERAS_HUB_SOURCE):
            yield pathlib.Path(os.environ[KERAS_HUB_SOURCE]) / self.package / self.path


@dataclasses.dataclass(frozen=True)
class Rebind:
    """For `PeerSuite.replace`: the module a peer file imported, one attribute ours.

    E.g. Keras' test calls `layers.MultiHeadAttention` on `keras.src.layers`.
    """

    attribute: str
    value: object

    def __call__(self, module):
        return types.SimpleNamespace(**{**vars(module), self.attribute: self.value})


def suite(peer, differences):
    """A `unittest.TestCase` running `peer`'s tests on our layers.

    Args:
        peer: the `PeerSuite`.
        differences: the test module's table, `{"TestCase.test_name": Difference}`;
            the entries for `peer.test_case` become strict expected failures.
    """
    path = next((p for p in peer.locations() if p.is_file()), None)
    if path is None:
        return _skipped(f"{peer.package}/{peer.path} is not installed{_hint(peer)}")
    try:
        module = _load(path)
    except ModuleNotFoundError as error:
        return _skipped(f"{path} cannot be imported: {error}")
    for name, value in peer.replace.items():
        if isinstance(value, Rebind):
            value = value(getattr(module, name))
        setattr(module, name, value)
    test_case = getattr(module, peer.test_case)
    prefix = f"{peer.test_case}."
    marked = {
        name[len(prefix) :]: difference
        for name, difference in differences.items()
        if name.startswith(prefix)
    }
    methods = {
        name: _expected_failure(getattr(test_case, name), difference)
        for name, difference in marked.items()
    }
    if hasattr(test_case, "test_session"):
        # keras-hub's TestCase is TensorFlow's, whose deprecated `test_session`
        # context manager is named like a test; pytest would report it skipped.
        methods["test_session"] = None
    return type(peer.test_case, (test_case,), methods)


def _hint(peer):
    if peer.package != "keras_hub":
        return ""
    return (
        f" (keras-hub's wheel ships no tests; set {KERAS_HUB_SOURCE} to a keras-hub "
        "checkout to run them)"
    )


def _load(path):
    """Executes the file at `path` as a module of its own, apart from the package's."""
    name = f"_peer_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _expected_failure(test, difference):
    @functools.wraps(test)
    def expected_to_fail(self, *args, **kwargs):
        return test(self, *args, **kwargs)

    mark = pytest.mark.xfail(
        raises=difference.raises, reason=difference.reason, strict=True
    )
    return mark(expected_to_fail)


def _skipped(reason):
    class PeerFileMissing(unittest.TestCase):
        def test_peer_file_is_available(self):
            self.skipTest(reason)

    return PeerFileMissing
