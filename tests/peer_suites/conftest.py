"""Markers that Keras' own test files use, known here so pytest does not warn."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "requires_trainable_backend: Keras' marker for tests that train (every "
        "backend of this project does)",
    )
