"""A small Hugging Face ViT with random weights, shared by the converter tests."""

import torch
import transformers


def vit_config(**overrides):
    """A 2-layer, width-32 ViT for 16x16 images in 4x4 patches, 5 labels."""
    config = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=16,
        patch_size=4,
        num_labels=5,
        layer_norm_eps=1e-6,
    )
    config.update(overrides)
    return transformers.ViTConfig(**config)


def randomised(model):
    """Random weights everywhere (HF zero-initialises biases and norms), eval mode."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(0.2 * noise)
    return model.eval()


def vit_classifier(**overrides):
    """`ViTForImageClassification` of `vit_config(**overrides)`, seeded, random."""
    torch.manual_seed(0)
    return randomised(transformers.ViTForImageClassification(vit_config(**overrides)))
