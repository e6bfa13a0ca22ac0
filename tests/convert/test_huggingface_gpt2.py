"""Hugging Face GPT-2 checkpoints convert to transformers' logits and greedy tokens."""

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from keras_attn.convert import causal_lm_from_huggingface  # noqa: E402
from keras_attn.models import gelu_approximate  # noqa: E402

# Logits of a float32 model; the ops differ in order only.
TOLERANCE = 1e-5
VOCABULARY_SIZE = 64
# Every call has this shape (JAX compiles each new one): a 5-token prompt and 8
# greedy tokens fill it, and `n_positions` leaves room.
BATCH, LENGTH, PROMPT = 2, 13, 5
_FC = "h.1.mlp.c_fc.weight"


def gpt2_config(**overrides):
    """Two layers of width 32, four heads, `n_inner` left to its default 4 * 32."""
    config = dict(
        vocab_size=VOCABULARY_SIZE,
        n_positions=16,
        n_embd=32,
        n_layer=2,
        n_head=4,
        layer_norm_epsilon=1e-6,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,  # GPT-2's 50256 is outside this vocabulary
        eos_token_id=None,  # greedy decoding never stops early
    )
    config.update(overrides)
    return transformers.GPT2Config(**config)


def gpt2(**overrides):
    """`GPT2LMHeadModel` with random weights everywhere (HF zero-initialises
    biases and sets norms to one), seeded, in eval mode."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(gpt2_config(**overrides))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():  # the tied head once, with wte
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def token_ids(seed=0):
    return np.random.RandomState(seed).randint(0, VOCABULARY_SIZE, (BATCH, LENGTH))


def torch_logits(model, ids, attention_mask=None):
    mask = None if attention_mask is None else torch.from_numpy(attention_mask)
    with torch.no_grad():
        output = model(torch.from_numpy(ids).long(), attention_mask=mask)
    return output.logits.numpy()


def keras_logits(model, inputs):
    return keras.ops.convert_to_numpy(model(inputs))


def state_dict(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module")
def source():
    return gpt2()


@pytest.fixture(scope="module")
def directory(source, tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    source.save_pretrained(path)  # model.safetensors, the tied lm_head left out
    return path


@pytest.fixture(scope="module")
def converted(directory):
    return causal_lm_from_huggingface(directory)


def test_safetensors_directory_gives_the_same_logits(source, directory, converted):
    assert (directory / "model.safetensors").is_file()
    ids = token_ids()
    difference = np.abs(keras_logits(converted, ids) - torch_logits(source, ids))
    assert difference.max() < TOLERANCE


def test_greedy_continuation_equals_generate(source, converted):
    prompt = token_ids(seed=1)[:, :PROMPT]
    with torch.no_grad():
        expected = source.generate(
            torch.from_numpy(prompt).long(),
            attention_mask=torch.ones(prompt.shape, dtype=torch.long),
            do_sample=False,
            max_new_tokens=LENGTH - PROMPT,
            pad_token_id=0,
        ).numpy()
    # Uncached: the whole row each step. Causal attention leaves the logits at
    # position t blind to the zeros after it, so one fixed shape serves.
    row = np.zeros((BATCH, LENGTH), "int32")
    row[:, :PROMPT] = prompt
    for t in range(PROMPT, LENGTH):
        row[:, t] = keras_logits(converted, row)[:, t - 1].argmax(-1)
    np.testing.assert_array_equal(row, expected)


def test_padding_mask_gives_the_logits_of_an_attention_mask(source, converted):
    ids = token_ids(seed=2)
    mask = np.ones((BATCH, LENGTH), "int32")
    mask[1, 8:] = 0  # a short second row, padded on the right
    inputs = {"token_ids": ids, "padding_mask": mask.astype(bool)}
    ours, theirs = keras_logits(converted, inputs), torch_logits(source, ids, mask)
    real = mask.astype(bool)  # HF's logits at padding positions are arbitrary
    assert np.abs(ours[real] - theirs[real]).max() < TOLERANCE


def test_configuration_follows_the_checkpoint(converted):
    assert converted.num_layers == 2 and converted.hidden_dim == 32
    assert converted.num_heads == 4 and converted.intermediate_dim == 4 * 32
    assert converted.max_sequence_length == 16
    assert converted.vocabulary_size == VOCABULARY_SIZE
    assert converted.layer_norm_epsilon == 1e-6
    assert converted.activation is gelu_approximate  # HF's "gelu_new"
    assert converted.tie_output_embeddings and converted.padding_id is None


def test_torch_file_with_head_and_mask_buffers_is_read(source, tmp_path):
    # As older checkpoints have them: the tied lm_head and each layer's
    # causal-mask buffers `attn.bias` and `attn.masked_bias`.
    state = state_dict(source)
    assert "lm_head.weight" in state
    for i in range(2):
        state[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(16, 16))[
            None, None
        ]
        state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, tmp_path / "pytorch_model.bin")
    source.config.to_json_file(tmp_path / "config.json")
    model = causal_lm_from_huggingface(tmp_path / "pytorch_model.bin")
    ids = token_ids()
    difference = np.abs(keras_logits(model, ids) - torch_logits(source, ids))
    assert difference.max() < TOLERANCE


def test_gpt2_model_names_without_prefix_are_read(source):
    # `GPT2Model` checkpoints (OpenAI's `gpt2` on the Hub) lack the prefix and the head.
    state = {
        name.removeprefix("transformer."): tensor
        for name, tensor in state_dict(source).items()
        if name != "lm_head.weight"
    }
    model = causal_lm_from_huggingface(state, config=source.config.to_dict())
    ids = token_ids()
    difference = np.abs(keras_logits(model, ids) - torch_logits(source, ids))
    assert difference.max() < TOLERANCE


def test_untied_head_is_read():
    source = gpt2(tie_word_embeddings=False)
    assert not torch.equal(source.lm_head.weight, source.transformer.wte.weight), (
        "the fixture must have its own head"
    )
    model = causal_lm_from_huggingface(state_dict(source), config=source.config)
    assert not model.tie_output_embeddings
    ids = token_ids()
    difference = np.abs(keras_logits(model, ids) - torch_logits(source, ids))
    assert difference.max() < TOLERANCE


def test_reorder_and_upcast_attn_is_read_as_float32_scores(source):
    # The flag upcasts scores and softmax to float32, which the core always does.
    reference = transformers.GPT2LMHeadModel(
        gpt2_config(reorder_and_upcast_attn=True)
    ).eval()
    reference.load_state_dict(source.state_dict())
    model = causal_lm_from_huggingface(
        state_dict(source), config=reference.config.to_dict()
    )
    ids = token_ids()
    difference = np.abs(keras_logits(model, ids) - torch_logits(reference, ids))
    assert difference.max() < TOLERANCE


def test_missing_tensor_is_named(source):
    state = state_dict(source)
    del state[f"transformer.{_FC}"]
    with pytest.raises(ValueError, match=rf"no tensor '{_FC}'"):
        causal_lm_from_huggingface(state, config=source.config)


def test_unexpected_tensor_is_named(source):
    state = state_dict(source)
    state["transformer.h.2.mlp.c_fc.weight"] = torch.zeros(32, 128)
    unexpected = r"no place for: \['h\.2\.mlp\.c_fc\.weight'\]"
    with pytest.raises(ValueError, match=unexpected):
        causal_lm_from_huggingface(state, config=source.config)


def test_mis_shaped_tensor_names_expected_and_found_shape(source):
    state = state_dict(source)
    state[f"transformer.{_FC}"] = torch.zeros(32, 96)
    with pytest.raises(ValueError) as error:
        causal_lm_from_huggingface(state, config=source.config)
    message = str(error.value)
    assert f"'{_FC}'" in message
    assert "(32, 128)" in message and "found shape (32, 96)" in message


def test_tied_head_that_differs_from_wte_is_refused(source):
    state = state_dict(source)
    state["lm_head.weight"] = state["lm_head.weight"] + 1.0
    with pytest.raises(ValueError, match=r"'lm_head\.weight' must equal 'wte\.weight'"):
        causal_lm_from_huggingface(state, config=source.config)


@pytest.mark.parametrize(
    "key, value",
    [
        ("scale_attn_by_inverse_layer_idx", True),
        ("add_cross_attention", True),
        ("scale_attn_weights", False),
        ("activation_function", "gelu_fast"),
    ],
)
def test_unsupported_config_is_refused_naming_the_key(source, key, value):
    config = {**source.config.to_dict(), key: value}
    with pytest.raises(ValueError, match=rf"config `{key}`.*received {value!r}"):
        causal_lm_from_huggingface(state_dict(source), config=config)


def test_config_without_gpt2_keys_is_refused(source):
    config = source.config.to_dict()
    del config["n_head"]
    with pytest.raises(ValueError, match=r"missing \['n_head'\]"):
        causal_lm_from_huggingface(state_dict(source), config=config)
