"""Input validation shared by every layer and op.

Every check raises a `ValueError` that names the owner (a layer or a function), the
argument, the value received and what was expected, so a user can fix the call without
reading our source.
"""

import numbers


def owner_name(layer):
    """`ClassName 'layer_name'`, the way error messages refer to a layer."""
    return f"{type(layer).__name__} '{layer.name}'"


def fail(owner, argument, value, expected):
    raise ValueError(
        f"{owner}: argument `{argument}` must be {expected}; received {value!r}."
    )


def check_positive_int(owner, argument, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        expected = "a positive integer" + (" or None" if allow_none else "")
        fail(owner, argument, value, expected)
    return int(value)


def check_rate(owner, argument, value):
    """A dropout-style rate in [0, 1)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= value < 1.0
    ):
        fail(owner, argument, value, "a number in [0, 1)")
    return float(value)


def check_positive_float(owner, argument, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        fail(owner, argument, value, "a positive number")
    return float(value)


def check_choice(owner, argument, value, choices):
    if value not in choices:
        fail(owner, argument, value, "one of " + ", ".join(map(repr, choices)))
    return value


def check_rank(owner, argument, shape, ranks):
    """`ranks` is an int or a tuple of accepted ranks; `shape` a tuple."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if len(shape) not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        raise ValueError(
            f"{owner}: argument `{argument}` must have rank {expected}; received "
            f"a tensor of shape {tuple(shape)} (rank {len(shape)})."
        )


def check_divisible(owner, argument, value, divisor, divisor_description):
    if value is not None and divisor is not None and value % divisor != 0:
        raise ValueError(
            f"{owner}: argument `{argument}` must be divisible by "
            f"{divisor_description} ({divisor}); received {value!r}."
        )
