"""`tests/_tolerances.py`: ulps, distances and the assertion other tests rely on."""

import keras
import numpy as np
from absl.testing import parameterized

from tests._keras_private import TestCase
from tests._tolerances import assert_close_in_ulps
from tests._tolerances import ulp
from tests._tolerances import ulp_distance
from tests._tolerances import unit_roundoff


class UlpTest(TestCase):
    @parameterized.named_parameters(
        ("bfloat16_one", 1.0, "bfloat16", 2.0**-7),
        ("bfloat16_below_three", -2.9917, "bfloat16", 2.0**-6),
        ("float16_one", 1.0, "float16", 2.0**-10),
        ("float32_just_below_one", 0.999, "float32", 2.0**-24),
        ("bfloat16_zero_is_the_subnormal_spacing", 0.0, "bfloat16", 2.0**-133),
        ("float16_subnormal", 1e-6, "float16", 2.0**-24),
    )
    def test_spacing_of_the_format(self, x, dtype, expected):
        self.assertEqual(float(ulp(x, dtype)), expected)

    def test_matches_numpy_spacing_for_float16_and_float32(self):
        x = np.random.default_rng(0).normal(size=100) * 10.0 ** np.arange(-2, 3).repeat(
            20
        )
        for dtype in ("float16", "float32"):
            spacing = np.spacing(np.abs(x).astype(dtype)).astype("float64")
            self.assertAllEqual(ulp(x.astype(dtype), dtype), spacing)

    def test_unit_roundoff_is_half_an_ulp_of_one(self):
        self.assertEqual(unit_roundoff("bfloat16"), 0.5 * float(ulp(1.0, "bfloat16")))

    def test_unknown_dtype_is_rejected(self):
        with self.assertRaisesRegex(ValueError, "int32"):
            ulp(1.0, "int32")


class AssertCloseInUlpsTest(TestCase):
    def test_reported_amd_case_is_one_and_a_half_ulps(self):
        distance = ulp_distance(-2.96875, -2.9917, "bfloat16")
        self.assertAllClose(distance, 1.4688, atol=1e-4)

    def test_within_the_bound_passes(self):
        assert_close_in_ulps([1.0 + 2**-7], [1.0], "bfloat16", ulps=1)

    def test_bfloat16_tensor_of_any_backend_is_compared(self):
        actual = keras.ops.cast(np.array([0.1, 300.0], "float32"), "bfloat16")
        assert_close_in_ulps(actual, np.array([0.1, 300.0]), "bfloat16", ulps=0.5)

    def test_beyond_the_bound_names_the_worst_element(self):
        with self.assertRaisesRegex(
            AssertionError,
            r"^out: 1 of 3 elements differ by more than 1 bfloat16 ulps\. Worst at "
            r"index \(2,\): actual -2\.96875, expected -2\.9917, 1\.47 ulps of "
            r"0\.0156\.$",
        ):
            assert_close_in_ulps(
                [1.0, 2.0, -2.96875], [1.0, 2.0, -2.9917], "bfloat16", 1, msg="out"
            )

    def test_magnitude_measures_ulps_at_the_terms_size(self):
        # 1e-3 out of a cancellation of terms near 1: 1e-3 is 0.13 ulps of 1.0.
        assert_close_in_ulps([1e-3], [0.0], "bfloat16", ulps=0.5, magnitude=[1.0])
        with self.assertRaises(AssertionError):
            assert_close_in_ulps([1e-3], [0.0], "bfloat16", ulps=0.5)

    def test_nan_fails(self):
        with self.assertRaisesRegex(AssertionError, "nan"):
            assert_close_in_ulps([np.nan, 1.0], [1.0, 1.0], "float32", ulps=100)

    def test_zero_ulps_requires_equality(self):
        assert_close_in_ulps([0.0, 3.0], [0.0, 3.0], "bfloat16", ulps=0)
        with self.assertRaises(AssertionError):
            assert_close_in_ulps([3.0 + 2**-6], [3.0], "bfloat16", ulps=0)

    def test_shapes_must_agree(self):
        with self.assertRaisesRegex(
            AssertionError, r"shapes differ: \(2,\) != \(1, 2\)"
        ):
            assert_close_in_ulps([1.0, 2.0], [[1.0, 2.0]], "float32", ulps=1)
