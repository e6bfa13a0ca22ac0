"""On torch, a model's `parameters()` are its trainable weights.

A torch user trains our models with a plain `torch.optim` loop or wraps them in
`DistributedDataParallel`; both see only what `model.parameters()` yields.
"""

import keras
import pytest

from keras_attn import models

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="torch.nn.Module parameters"
)

MODELS = {
    "vision_transformer": lambda: models.VisionTransformer(
        image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8,
        mlp_dim=16, num_classes=3,
    ),
    "transformer": lambda: models.Transformer(
        vocabulary_size=20, num_layers=1, hidden_dim=8, intermediate_dim=16,
        num_heads=2,
    ),
    "causal_lm": lambda: models.CausalLM(
        vocabulary_size=20, num_layers=1, hidden_dim=8, intermediate_dim=16,
        num_heads=2, max_sequence_length=8, tie_output_embeddings=False,
    ),
    "image_captioner": lambda: models.ImageCaptioner(
        vocabulary_size=20, image_size=8, encoder="vit", patch_size=4,
        num_encoder_layers=1, num_decoder_layers=1, hidden_dim=8,
        intermediate_dim=16, num_heads=2,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameters_are_the_trainable_weights(name):
    model = MODELS[name]()
    trainable = [p for p in model.parameters() if p.requires_grad]
    expected = {id(w.value) for w in model.trainable_weights}
    assert len(trainable) == len(model.trainable_weights)
    assert {id(p) for p in trainable} == expected
