"""The package version, in a module of its own so that `keras_attn.cli` and the
build (setup.cfg's `version = attr:`) read it without importing the package."""

__version__ = "0.1.0"
