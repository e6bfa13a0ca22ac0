"""Base of our functional-API models (the keras-hub "Backbone" pattern).

A model creates its layers as attributes, builds its graph on `keras.Input`s by
calling them, then calls `super().__init__(inputs=..., outputs=...)`. Its config is
its constructor arguments, so `from_config` rebuilds the graph from them.
"""

import keras


class FunctionalModel(keras.Model):
    """A functional `keras.Model` whose layers are attributes set before `__init__`."""

    def __init__(self, *args, dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
        if dtype is not None:
            self.dtype_policy = dtype  # functional models ignore a `dtype` argument
        self._initialized = True

    @staticmethod
    def _pop_dtype_policy(kwargs):
        """The `dtype` in `kwargs` as a `DTypePolicy` (or None), removed from them.

        Subclasses give it to every layer they create: the policy of a functional
        model does not reach layers created before its `__init__`.
        """
        dtype = kwargs.pop("dtype", None)
        return None if dtype is None else keras.dtype_policies.get(dtype)

    def __setattr__(self, name, value):
        # torch.nn.Module refuses sub-modules before its __init__ ran. Every layer
        # is part of the functional graph and tracked there, so bypass it.
        if keras.config.backend() == "torch" and not hasattr(self, "_initialized"):
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    def _base_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
