"""Base of our functional-API models (the keras-hub "Backbone" pattern).

A model creates its layers as attributes, builds its graph on `keras.Input`s by
calling them, then calls `super().__init__(inputs=..., outputs=...)`. Its config is
its constructor arguments, so `from_config` rebuilds the graph from them.
"""

import keras


class FunctionalModel(keras.Model):
    """A functional `keras.Model` whose layers are attributes set before `__init__`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._initialized = True

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
