"""ViT-S/16 forward at 224x224, batch 1 and 32: keras_attn against keras-hub.

`keras_attn.models.vision_transformer_preset("ViT-S/16")` and
`keras_hub.models.ViTBackbone` of the same size (12 layers, width 384, 6 heads,
MLP 1536, patch 16), random weights, `predict_on_batch` (compiled), interleaved.
The keras-hub backbone has no classification head; ours has its 1000-class head,
which is under 0.5% of the work.
"""

import keras
import numpy as np

from benchmarks import _timing


def _ours():
    from keras_attn.models import vision_transformer_preset

    return vision_transformer_preset("ViT-S/16")


def _keras_hub():
    from keras_hub.models import ViTBackbone

    return ViTBackbone(
        image_shape=(224, 224, 3),
        patch_size=16,
        num_layers=12,
        num_heads=6,
        hidden_dim=384,
        mlp_dim=1536,
    )


def _predict(model, images):
    def run():
        keras.ops.convert_to_numpy(
            keras.tree.flatten(model.predict_on_batch(images))[0]
        )

    return run


def run(quick=False, rounds=None):
    rounds = rounds or (2 if quick else 5)
    keras.utils.set_random_seed(0)
    models = {"keras_attn": _ours(), "keras_hub": _keras_hub()}
    result = {"case": "vit_inference", "latency_ms": {}, "speedup_vs_keras_hub": {}}
    for batch in (1,) if quick else (1, 32):
        images = np.random.default_rng(0).uniform(size=(batch, 224, 224, 3))
        images = images.astype("float32")
        times = _timing.interleave(
            {n: _predict(m, images) for n, m in models.items()}, rounds
        )
        key = f"batch {batch}"
        result["latency_ms"][key] = {
            n: _timing.summary([1e3 * s for s in t]) for n, t in times.items()
        }
        result["speedup_vs_keras_hub"][key] = _timing.ratio_summary(
            times["keras_hub"], times["keras_attn"]
        )
    return result


if __name__ == "__main__":
    _timing.case_main(run)
