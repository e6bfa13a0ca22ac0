"""Train the digits ViT of `vit_digits.py` with data and model parallelism (JAX).

The devices form a 2-D mesh `(batch, model)`: each batch is split over the `batch`
axis, and each attention and feed-forward block over the `model` axis (heads,
Megatron-style feed-forward) by `keras_attn.distribution.layout_map`. Data, model,
optimizer and schedule are those of `examples/vit_digits.py`.

Without accelerators, JAX simulates 8 CPU devices (the script sets
`XLA_FLAGS=--xla_force_host_platform_device_count=8` before JAX starts):

    python examples/distributed.py --quick            # a few steps, mesh 2x4
    python examples/distributed.py --epochs 10

On a host with several GPUs, use the real devices and pick the model axis:

    python examples/distributed.py --simulated-devices 0 --model-parallel 2

(8 GPUs give a mesh 4x2.) On several hosts, run the same command on each with
`KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES` and
`KERAS_DISTRIBUTION_PROCESS_ID` set, and `--multi-host`, which calls
`keras.distribution.initialize()` first. The last line printed is
`RESULT test_accuracy=0.xxx devices=N mesh=BxM seconds=NN`.
"""

import argparse
import os
import sys
import time

_START = time.perf_counter()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="train a few steps only (a smoke test)"
    )
    parser.add_argument("--epochs", type=int, default=40, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument(
        "--model-parallel",
        type=int,
        default=4,
        help="devices along the model axis; must divide the 4 heads (default 4)",
    )
    parser.add_argument(
        "--simulated-devices",
        type=int,
        default=8,
        help="CPU devices for JAX to simulate; 0 uses the real devices",
    )
    parser.add_argument(
        "--multi-host",
        action="store_true",
        help="call keras.distribution.initialize() (one process per host)",
    )
    return parser.parse_args(argv)


def configure_environment(args):
    """Before Keras imports JAX: the backend and the simulated devices."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ["KERAS_BACKEND"] != "jax":
        sys.exit(
            "keras.distribution shards variables on JAX only; run with "
            "KERAS_BACKEND=jax (see docs/distributed.md for TensorFlow and torch)"
        )
    if args.simulated_devices:
        flag = f"--xla_force_host_platform_device_count={args.simulated_devices}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
        os.environ["JAX_PLATFORMS"] = "cpu"


def distribution(args):
    """`ModelParallel` over a `(batch, model)` mesh of every device."""
    import keras

    import keras_attn

    if args.multi_host:
        keras.distribution.initialize()
    devices = keras.distribution.list_devices()
    if len(devices) % args.model_parallel:
        sys.exit(
            f"--model-parallel {args.model_parallel} must divide the "
            f"{len(devices)} devices"
        )
    shape = (len(devices) // args.model_parallel, args.model_parallel)
    mesh = keras.distribution.DeviceMesh(shape, ("batch", "model"), devices)
    # `model_parallel` is `ModelParallel(layout_map=layout_map(mesh))` that
    # also checks each variable against its layout as it is created.
    return keras_attn.distribution.model_parallel(mesh), mesh


def main(argv=None):
    args = parse_args(argv)
    configure_environment(args)

    import keras
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import vit_digits

    from keras_attn.models import VisionTransformer

    keras.utils.set_random_seed(vit_digits.SEED)
    strategy, mesh = distribution(args)
    batch_devices = mesh.shape[0]
    if args.batch_size % batch_devices:
        sys.exit(
            f"--batch-size must be a multiple of the {batch_devices} batch devices"
        )
    x_train, x_test, y_train, y_test = vit_digits.load_data()
    # Every batch splits evenly over the batch axis: training drops its partial
    # last batch, the test set is cut to a multiple of the batch devices.
    # Every batch is split evenly over the batch axis: no partial last batch,
    # and a test set cut to a multiple of the batch devices.
    x_test, y_test = (a[: len(a) - len(a) % batch_devices] for a in (x_test, y_test))
    print(f"backend: {keras.backend.backend()}, mesh {mesh.shape} {mesh.axis_names}")

    with strategy.scope():
        model = VisionTransformer(**vit_digits.MODEL, name="vit_digits")
        batches = full_batches(vit_digits.ShiftedDigits)(
            x_train, y_train, args.batch_size, seed=vit_digits.SEED
        )
        epochs, steps = (1, 5) if args.quick else (args.epochs, len(batches))
        vit_digits.compile_model(model, epochs * steps, args.learning_rate)
        show_layouts(model)
        model.fit(batches, epochs=epochs, steps_per_epoch=steps)
        test_accuracy, _ = vit_digits.accuracy(model, x_test, y_test)
    print(f"test accuracy: {test_accuracy:.4f}")

    losses = np.asarray(model.history.history["loss"])
    if not np.all(np.isfinite(losses)):
        sys.exit(f"training diverged: losses {losses}")
    seconds = time.perf_counter() - _START
    devices = int(np.prod(mesh.shape))
    print(
        f"RESULT test_accuracy={test_accuracy:.3f} devices={devices} "
        f"mesh={mesh.shape[0]}x{mesh.shape[1]} seconds={seconds:.0f}"
    )


def full_batches(dataset_class):
    """`dataset_class` without its partial last batch, which would not split."""

    class FullBatches(dataset_class):
        def __len__(self):
            return len(self.images) // self.batch_size

    return FullBatches


def show_layouts(model):
    """How the first encoder block's variables are cut across the devices."""
    for variable in model.get_layer("encoder_layer_0").weights:
        sharding = variable.value.sharding
        shard = sharding.shard_shape(tuple(variable.shape))
        print(
            f"  {variable.path:<55} {str(tuple(variable.shape)):<12} "
            f"shard {str(shard):<12} {getattr(sharding, 'spec', '')}"
        )


if __name__ == "__main__":
    main()
