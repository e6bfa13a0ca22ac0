"""`.keras` files saved by earlier versions load with the outputs they computed then.

`fixtures/VERSION/` holds, per model kind and per backend, a small model saved by that
version (`make_fixtures.py`) with its inputs and outputs. Every fixture loads on every
backend. Outputs are compared in units of the float32 spacing at the size of the
outputs (`ulp = eps * max|expected|`):

- same backend as the one that saved it: 64 ulps. The weights are bit-identical, the
  program is the same, only the kernels may differ (oneDNN, XLA and ATen choose their
  blocking by CPU, so sums are added in another order on another machine);
- another backend: 2**12 ulps (about 2.4e-4 relative). Different libraries compute
  layer norm, GELU, softmax and matmuls with different algorithms; through a few
  blocks their float32 roundings add up to that, while a changed mask, weight or
  formula changes outputs by orders of magnitude more.
"""

import pathlib

import keras
import numpy as np
import pytest

import keras_attn  # noqa: F401  registers the layers for deserialization

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
SAVED = sorted(FIXTURES.glob("*/*.keras"))
SAME_BACKEND_ULPS = 64
OTHER_BACKEND_ULPS = 2**12


def _inputs(data):
    inputs = {name: data[name] for name in data.files if name != "outputs"}
    return inputs if len(inputs) > 1 else next(iter(inputs.values()))


def test_every_model_kind_and_backend_has_a_fixture():
    names = {path.stem for path in SAVED}
    for kind in ("layers", "transformer", "vision_transformer", "image_captioner_vit"):
        for backend in ("tensorflow", "jax", "torch"):
            assert f"{kind}_{backend}" in names


@pytest.mark.parametrize(
    "path", SAVED, ids=[f"{p.parent.name}/{p.stem}" for p in SAVED]
)
def test_saved_model_loads_with_the_outputs_it_was_saved_with(path):
    data = np.load(path.with_suffix(".npz"))
    model = keras.saving.load_model(path)
    outputs = keras.ops.convert_to_numpy(model.predict(_inputs(data), verbose=0))
    expected = data["outputs"]
    saved_on = path.stem.rsplit("_", 1)[1]
    same_backend = saved_on == keras.backend.backend()
    ulps = SAME_BACKEND_ULPS if same_backend else OTHER_BACKEND_ULPS
    ulp = np.finfo("float32").eps * np.abs(expected).max()
    worst = np.abs(outputs - expected).max() / ulp
    assert outputs.shape == expected.shape
    assert worst <= ulps, (
        f"{path.name} (saved on {saved_on}): outputs differ by {worst:.0f} ulps of "
        f"the output scale, more than {ulps}"
    )
