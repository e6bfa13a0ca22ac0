"""Write an export next to its destination, then move it there in one step.

A failed export leaves the destination as it was: no half-written SavedModel, not
a missing one where an older export was, and no empty folder that the export
created on the way to it. Each step prints one line, so a long export shows where
it is.
"""

import contextlib
import os
import shutil
import tempfile


def report(verbose, message):
    """Print one progress line of an export (when `verbose`)."""
    if verbose:
        print(f"keras-attn export: {message}", flush=True)


@contextlib.contextmanager
def staged(path, directory):
    """Yield a temporary sibling of `path`; on success it replaces `path`.

    Folders missing on the way to `path` are created, and removed again when
    the export fails.

    Args:
        path: the destination (a directory or a file).
        directory: bool. Whether the yielded path is an (empty, existing)
            directory, or a file path that does not exist yet.
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    created = _make_folders(parent)
    try:
        scratch = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
        try:
            staging = scratch if directory else os.path.join(scratch, name)
            yield staging
            if not directory:
                _move_companions(scratch, name, parent)
            _remove(path)
            os.replace(staging, path)
        finally:
            _remove(scratch)
    except BaseException:
        _remove_empty_folders(created)
        raise


def _move_companions(scratch, name, parent):
    # A file export may have written companions beside it (ONNX external data,
    # `NAME.data`, for models over 2 GB); they move with it.
    for companion in sorted(set(os.listdir(scratch)) - {name}):
        _remove(os.path.join(parent, companion))
        os.replace(os.path.join(scratch, companion), os.path.join(parent, companion))


def _make_folders(folder):
    """Create `folder` and its missing parents; return those created, deepest first."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for created in reversed(missing):
        os.mkdir(created)
    return missing


def _remove_empty_folders(folders):
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:  # something else wrote there meanwhile: keep it
            return


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
