"""Write an export next to its destination, then move it there in one step.

A failed export leaves nothing at the destination: not a half-written SavedModel,
and not a missing one where an older export was.
"""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def staged(path, directory):
    """Yield a temporary sibling of `path`; on success it replaces `path`.

    Args:
        path: the destination (a directory or a file).
        directory: bool. Whether the yielded path is an (empty, existing)
            directory, or a file path that does not exist yet.
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
    staging = scratch if directory else os.path.join(scratch, name)
    try:
        yield staging
        # A file export may have written companions beside it (ONNX external
        # data, `NAME.data`, for models over 2 GB); they move with it.
        companions = [] if directory else sorted(set(os.listdir(scratch)) - {name})
        for companion in companions:
            _remove(os.path.join(parent, companion))
            os.replace(
                os.path.join(scratch, companion), os.path.join(parent, companion)
            )
        _remove(path)
        os.replace(staging, path)
    finally:
        _remove(scratch)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
