"""TensorBoard event files of scalars and PNG images, without TensorFlow.

The records are TensorBoard's own (`event_pb2.Event` protos framed by its
`RecordWriter`), written through its TensorFlow-free `gfile` (local paths, and
`s3://` or fsspec URLs where those are installed). Not `EventFileWriter`: its
`tf.io.gfile` imports TensorFlow whenever it is installed (4 s measured), which a
torch training need not otherwise do, and it writes from a thread that flushes
every two minutes; here each event is on disk when `write` returns.
"""

import itertools
import os
import socket
import time
import types

from keras_attn.inspect._png import png_bytes

_FILE_NUMBERS = itertools.count()


class EventFile:
    """One event file in `directory`, created at the first `write`.

    Raises:
        ImportError: the `tensorboard` package is not installed (at once, so a
            callback fails when it is made, not after its first epoch).
    """

    def __init__(self, owner, directory):
        self._tensorboard = _import_tensorboard(owner)
        self._directory = os.fspath(directory)
        self._records = None

    def write(self, step, scalars=None, images=None):
        """One event at `step`: `{tag: number}` scalars, `{tag: uint8 pixels}`
        images (`(height, width)` grey or `(height, width, 3|4)`)."""
        summary_pb2 = self._tensorboard.summary_pb2
        values = [
            summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in (scalars or {}).items()
        ]
        for tag, pixels in (images or {}).items():
            height, width = pixels.shape[:2]
            image = summary_pb2.Summary.Image(
                height=height,
                width=width,
                colorspace=1 if pixels.ndim == 2 else pixels.shape[2],
                encoded_image_string=png_bytes(pixels),
            )
            values.append(summary_pb2.Summary.Value(tag=tag, image=image))
        self._write(
            self._tensorboard.event_pb2.Event(
                wall_time=time.time(),
                step=int(step),
                summary=summary_pb2.Summary(value=values),
            )
        )

    def close(self):
        """Ends this file; a later `write` starts a new one (as a new run does)."""
        if self._records is not None:
            self._records.close()
            self._records = None

    def _write(self, event):
        if self._records is None:
            self._records = self._open()
        self._records.write(event.SerializeToString())
        # A local file is appended to on every write; a store without appends
        # (S3) is rewritten whole: a few events per epoch, small files.
        self._records.flush()

    def _open(self):
        tensorboard = self._tensorboard
        tensorboard.gfile.makedirs(self._directory)
        # TensorBoard's own naming: it reads every `*tfevents*` file of a run.
        name = (
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
            f".{os.getpid()}.{next(_FILE_NUMBERS)}"
        )
        path = os.path.join(self._directory, name)
        records = tensorboard.RecordWriter(tensorboard.gfile.GFile(path, "wb"))
        header = tensorboard.event_pb2.Event(
            wall_time=time.time(), file_version="brain.Event:2"
        )
        records.write(header.SerializeToString())
        return records


def _import_tensorboard(owner):
    try:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.compat.tensorflow_stub.io import gfile
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError as error:
        raise ImportError(
            f"{owner} writes TensorBoard event files with the `tensorboard` "
            "package, which is not installed: pip install tensorboard "
            "(TensorFlow is not needed)."
        ) from error
    return types.SimpleNamespace(
        event_pb2=event_pb2,
        summary_pb2=summary_pb2,
        gfile=gfile,
        RecordWriter=RecordWriter,
    )
