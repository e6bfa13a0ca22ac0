"""The machinery that runs peer test files: what it does when a file is missing or
a table entry names no test."""

import dataclasses
import sys
import unittest

import keras
import pytest

from tests.peer_suites._peers import Difference
from tests.peer_suites._peers import PeerSuite
from tests.peer_suites._peers import suite

_KERAS_MHA = PeerSuite(
    "keras",
    "src/layers/attention/multi_head_attention_test.py",
    "MultiHeadAttentionTest",
    {},
)


def test_a_missing_peer_file_is_one_skip_that_names_it(monkeypatch):
    monkeypatch.delenv("KERAS_HUB_SOURCE", raising=False)
    missing = PeerSuite("keras_hub", "src/no_such_test.py", "NoSuchTest", {})
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(suite(missing, {})).run(result)
    assert result.testsRun == 1
    [(_, reason)] = result.skipped
    assert "keras_hub/src/no_such_test.py is not installed" in reason
    assert "KERAS_HUB_SOURCE" in reason


def test_a_difference_must_name_a_test_of_the_file():
    misspelt = {"MultiHeadAttentionTest.test_no_such_test": Difference(ValueError, "")}
    with pytest.raises(AttributeError, match="test_no_such_test"):
        suite(_KERAS_MHA, misspelt)


def test_names_are_rebound_in_a_private_copy_of_the_peer_file():
    ours = object()
    peer = dataclasses.replace(_KERAS_MHA, replace={"layers": ours})
    peer_module = sys.modules[suite(peer, {}).__mro__[1].__module__]
    assert peer_module.layers is ours
    assert (
        peer_module.__name__ != "keras.src.layers.attention.multi_head_attention_test"
    )
    assert keras.layers.MultiHeadAttention.__module__.startswith("keras.")
