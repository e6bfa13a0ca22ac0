"""`torch.nn.Transformer` converts to a keras_attn `Transformer` with equal logits."""

import math

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from keras_attn.convert import transformer_from_torch  # noqa: E402

VOCABULARY = 13
HIDDEN = 32
PADDING_ID = 0
# float32 logits; the ops differ in order only.
TOLERANCE = 1e-4


class _Pipeline(torch.nn.Module):
    """The PyTorch tutorial's recipe: embedding × √d + sinusoids, nn.Transformer,
    masks from padding and causality, a tied or separate projection."""

    def __init__(self, norm_first, tied=True, activation="relu"):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(VOCABULARY, HIDDEN)
        self.transformer = torch.nn.Transformer(
            d_model=HIDDEN,
            nhead=4,
            num_encoder_layers=2,
            num_decoder_layers=2,
            dim_feedforward=64,
            dropout=0.1,
            activation=activation,
            batch_first=True,
            norm_first=norm_first,
        )
        self.projection = None if tied else torch.nn.Linear(HIDDEN, VOCABULARY, False)
        with torch.no_grad():  # norms start at (1, 0): randomise everything
            for parameter in self.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
        self.eval()

    def _embed(self, ids):
        x = self.embedding(ids) * math.sqrt(HIDDEN)
        position = torch.arange(ids.shape[1], dtype=torch.float32)[:, None]
        frequencies = torch.exp(
            torch.arange(0, HIDDEN, 2, dtype=torch.float32)
            * (-math.log(10000.0) / HIDDEN)
        )
        table = torch.zeros(ids.shape[1], HIDDEN)
        table[:, 0::2] = torch.sin(position * frequencies)
        table[:, 1::2] = torch.cos(position * frequencies)
        return x + table

    def forward(self, source, target):
        source_padding = source == PADDING_ID
        causal = torch.nn.Transformer.generate_square_subsequent_mask(
            target.shape[1], dtype=torch.bool
        )
        x = self.transformer(
            self._embed(source),
            self._embed(target),
            tgt_mask=causal,
            src_key_padding_mask=source_padding,
            tgt_key_padding_mask=target == PADDING_ID,
            memory_key_padding_mask=source_padding,
            tgt_is_causal=True,
        )
        weight = self.embedding.weight if self.projection is None else None
        if weight is None:
            return self.projection(x)
        return x @ weight.T


def _tokens():
    rng = np.random.RandomState(0)
    source = rng.randint(1, VOCABULARY, size=(2, 7)).astype("int64")
    target = rng.randint(1, VOCABULARY, size=(2, 5)).astype("int64")
    source[1, 4:] = PADDING_ID  # padded source
    target[0, 3:] = PADDING_ID  # padded target
    return source, target


def _difference(pipeline, model):
    source, target = _tokens()
    with torch.no_grad():
        expected = pipeline(torch.from_numpy(source), torch.from_numpy(target))
    logits = model(
        {
            "encoder_token_ids": source.astype("int32"),
            "decoder_token_ids": target.astype("int32"),
        }
    )
    real = target != PADDING_ID  # padded target rows are never read
    return np.abs(keras.ops.convert_to_numpy(logits) - expected.numpy())[real].max()


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_module_gives_the_same_logits_with_causal_and_padding_masks(norm_first):
    pipeline = _Pipeline(norm_first)
    model = transformer_from_torch(pipeline.transformer, pipeline.embedding)
    assert model.normalize_first == norm_first and model.final_norm
    assert _difference(pipeline, model) < TOLERANCE


def test_state_dict_with_untied_projection_and_gelu():
    pipeline = _Pipeline(norm_first=True, tied=False, activation="gelu")
    model = transformer_from_torch(
        pipeline.transformer.state_dict(),
        pipeline.embedding.weight,
        output_projection=pipeline.projection,
        num_heads=4,
        normalize_first=True,
        activation="gelu",
    )
    assert not model.tie_output_embeddings
    assert _difference(pipeline, model) < TOLERANCE


def test_state_dict_needs_num_heads():
    pipeline = _Pipeline(norm_first=False)
    with pytest.raises(ValueError, match="num_heads"):
        transformer_from_torch(
            pipeline.transformer.state_dict(), pipeline.embedding, normalize_first=False
        )


def test_mis_shaped_in_projection_is_named():
    pipeline = _Pipeline(norm_first=False)
    state = pipeline.transformer.state_dict()
    name = "decoder.layers.1.multihead_attn.in_proj_weight"
    state[name] = state[name][:64]
    with pytest.raises(ValueError) as error:
        transformer_from_torch(
            state, pipeline.embedding, num_heads=4, normalize_first=False
        )
    assert f"'{name}'" in str(error.value)
    assert "(96, 32)" in str(error.value) and "found shape (64, 32)" in str(error.value)
