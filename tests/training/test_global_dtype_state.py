"""Global dtype state (floatx, the dtype policy) never leaks from one test to the next.

Mixed-precision tests change process-wide Keras state; the autouse fixture of
tests/conftest.py puts it back after every test, also after a failing one. This
runs two tests in a session of their own, with that fixture, in this process.
"""

import keras

TWO_TESTS = """
import keras


def test_1_sets_float16_and_mixed_bfloat16_then_raises():
    keras.config.set_floatx("float16")
    keras.config.set_dtype_policy("mixed_bfloat16")
    raise RuntimeError("a failing test")


def test_2_sees_the_defaults():
    assert keras.config.floatx() == "float32"
    assert keras.config.dtype_policy().name == "float32"
"""


def test_a_failing_test_leaves_floatx_and_dtype_policy_as_they_were(pytester):
    pytester.makeconftest(
        "from tests.conftest import _seed_and_restore_dtype_policy  # noqa: F401"
    )
    pytester.makepyfile(test_inner=TWO_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1, failed=1)
    # Restored after the last test too, in this very process.
    assert keras.config.floatx() == "float32"
    assert keras.config.dtype_policy().name == "float32"
