"""GPT-2's activation and the GPT-2 configurations of `CausalLM`."""

import keras

from keras_attn import _checks
from keras_attn.models.causal_lm import CausalLM


@keras.saving.register_keras_serializable(package="keras_attn")
def gelu_approximate(x):
    """GELU with the tanh approximation: GPT-2's activation (`gelu_new` in
    Hugging Face transformers). Registered, so models that use it save and load.

    Example:
    ```python
    model = CausalLM(vocabulary_size=100, activation=gelu_approximate, ...)
    ```
    """
    return keras.activations.gelu(x, approximate=True)


# Radford et al., 2019, Table 2; the sizes of OpenAI's released checkpoints.
_GPT2 = dict(
    vocabulary_size=50257,
    max_sequence_length=1024,
    position_embedding="learned",
    normalize_first=True,
    tie_output_embeddings=True,
    activation=gelu_approximate,
    dropout=0.1,
    layer_norm_epsilon=1e-5,
    padding_id=None,  # GPT-2 has no padding token: id 0 is "!"
)
_PRESETS = {
    "gpt2": dict(num_layers=12, hidden_dim=768, intermediate_dim=3072, num_heads=12),
    "gpt2-medium": dict(
        num_layers=24, hidden_dim=1024, intermediate_dim=4096, num_heads=16
    ),
}


def causal_lm_preset(name, /, **overrides):
    """A `CausalLM` with the configuration of a GPT-2 checkpoint.

    | preset          | layers | hidden | heads | feed-forward | parameters  |
    |-----------------|--------|--------|-------|--------------|-------------|
    | `"gpt2"`        | 12     | 768    | 12    | 3072         | 124,439,808 |
    | `"gpt2-medium"` | 24     | 1024   | 16    | 4096         | 354,823,168 |

    Both have a 50,257-token vocabulary, 1,024 learned positions, pre-LN blocks
    with a final norm, tied output embeddings, layer-norm epsilon 1e-5, the
    tanh-approximate GELU (`gelu_approximate`) and no padding token. The
    parameter counts are Hugging Face's. The weights are random: this function
    downloads nothing.

    Args:
        name: string, `"gpt2"` or `"gpt2-medium"`. Positional only, so that
            `name=` among the overrides names the model.
        **overrides: `CausalLM` arguments that replace the preset's (and the
            default `name`, the preset's with `_` for `-`).

    Returns:
        A `CausalLM`.

    Example:
    ```python
    model = keras_attn.models.causal_lm_preset("gpt2", dropout=0.0)
    model.count_params()  # 124439808
    ```
    """
    if not isinstance(name, str) or name not in _PRESETS:
        expected = "one of " + ", ".join(map(repr, _PRESETS))
        _checks.fail("causal_lm_preset", "name", name, expected)
    config = {**_GPT2, **_PRESETS[name], "name": name.replace("-", "_")}
    return CausalLM(**{**config, **overrides})
