"""PyTorch: DistributedDataParallel (gloo, 2 CPU processes) vs one process.

Both train a keras_attn `VisionTransformer` with the same torch loop; DDP splits
each batch of 16 in two halves of 8 and averages the gradients, which is the
gradient of the mean loss over the 16. Run as a script with `MASTER_PORT` set to a
free port; prints `RESULT {json}`: the losses, the largest weight difference
between the ranks and between DDP and the single process.
"""

import os

os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29512")

import json  # noqa: E402
import tempfile  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from tests.distribution import _scenarios  # noqa: E402

WORLD_SIZE = 2


def train(model, module, images, labels, reduce_loss=None):
    """`STEPS` Adam steps of `module` (the model, or its DDP wrapper); the losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels).long()
    losses = []
    for _ in range(_scenarios.STEPS):
        loss = torch.nn.functional.cross_entropy(module(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss = loss.detach()
        losses.append(float(reduce_loss(loss) if reduce_loss else loss))
    return losses


def mean_over_ranks(loss):
    loss = loss.clone()
    dist.all_reduce(loss)
    return loss / WORLD_SIZE


def worker(rank, folder):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    keras.utils.set_random_seed(0)
    model = _scenarios.vision_transformer()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    images, labels = _scenarios.vision_data()
    share = slice(
        rank * len(images) // WORLD_SIZE, (rank + 1) * len(images) // WORLD_SIZE
    )
    losses = train(model, ddp, images[share], labels[share], mean_over_ranks)
    np.savez(os.path.join(folder, f"rank{rank}.npz"), losses, *model.get_weights())
    dist.destroy_process_group()


def load(path):
    with np.load(path) as arrays:
        values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    return values[0].tolist(), values[1:]


def largest_difference(weights, others):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(weights, others))


def main():
    torch.set_num_threads(1)
    keras.utils.set_random_seed(0)
    reference = _scenarios.vision_transformer()
    single = train(reference, reference, *_scenarios.vision_data())
    with tempfile.TemporaryDirectory() as folder:
        torch.multiprocessing.spawn(worker, args=(folder,), nprocs=WORLD_SIZE)
        (losses, weights), (losses_1, weights_1) = (
            load(os.path.join(folder, f"rank{rank}.npz")) for rank in range(WORLD_SIZE)
        )
    result = {
        "single": single,
        "ddp": losses,
        "ddp_rank1": losses_1,
        "rank_weight_difference": largest_difference(weights, weights_1),
        "single_weight_difference": largest_difference(
            weights, reference.get_weights()
        ),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
