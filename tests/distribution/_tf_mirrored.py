"""TensorFlow: `fit` under `tf.distribute.MirroredStrategy` on 2 logical CPUs vs one.

Run as a script; prints `RESULT {json}` with the losses of both runs.
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests.distribution import _scenarios  # noqa: E402


def main():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    data = _scenarios.vision_data()

    keras.utils.set_random_seed(0)
    reference = _scenarios.vision_transformer()
    initial = reference.get_weights()
    single = _scenarios.fit_losses(reference, data)

    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = _scenarios.vision_transformer()
        model.set_weights(initial)
        mirrored = _scenarios.fit_losses(model, data)
    result = {
        "replicas": strategy.num_replicas_in_sync,
        "single": single,
        "mirrored": mirrored,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
