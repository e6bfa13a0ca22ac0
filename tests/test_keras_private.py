"""The private Keras API we use still exists where we import it from.

When a Keras release moves one of these, this test names it, instead of an
`ImportError` deep inside a layer module.
"""

import importlib

import pytest

PRIVATE_API = (
    ("keras.src.backend", "get_keras_mask"),
    ("keras.src.backend", "set_keras_mask"),
    ("keras.src.backend.common", "global_state"),
    ("keras.src.testing", "TestCase"),
    ("keras.src.testing.test_utils", "named_product"),
)


@pytest.mark.parametrize(("module", "name"), PRIVATE_API)
def test_private_keras_api_is_where_we_import_it_from(module, name):
    import keras

    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        pytest.fail(
            f"keras {keras.__version__} has no `{module}.{name}` ({error}); update "
            "keras_attn/_keras_private.py or tests/_keras_private.py, the only "
            "places that import it."
        )
    assert callable(found) or hasattr(found, "__dict__")


def test_package_imports_private_keras_api_in_one_module_only():
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "keras_attn"
    users = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "keras.src" in path.read_text()
    )
    assert users == ["_keras_private.py"], users
