"""The corpus of `examples/stdlib_lm.py`: CPython's standard library as bytes.

Files: every `*.py` under `sysconfig.get_paths()["stdlib"]`, sorted by relative
path, except those under a `test`, `tests` or `idle_test` directory (the
regression suite is as large as the library and mostly repeats its calls) and
under `site-packages` (not the standard library).

Documents: the top-level functions and classes of each file (`ast`), decorators
included, as UTF-8 bytes, in source order. Module docstrings, imports and
top-level statements are left out. A file that does not parse as Python (a few
templates, or a file written for another version) gives no document.

Split: a file is held out for validation when the SHA-1 of its relative path
(with `/` separators) falls in the first `fraction` of the hash range, so the
split is fixed, does not depend on the order of the files, and a file keeps its
side when other files are added.

The vocabulary is the 256 byte values; byte 0 does not occur in source text, so
packing may pad with it (and its loss mask keeps it out of the loss).
"""

import ast
import hashlib
import lzma
import pathlib
import sysconfig

import numpy as np

VOCABULARY_SIZE = 256
EXCLUDED_DIRECTORIES = frozenset({"test", "tests", "idle_test", "site-packages"})


def stdlib_root():
    """The directory of the running interpreter's standard library."""
    return pathlib.Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root=None):
    """Relative paths (POSIX strings) of the corpus files under `root`, sorted."""
    root = pathlib.Path(root) if root is not None else stdlib_root()
    paths = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if EXCLUDED_DIRECTORIES.isdisjoint(relative.parts[:-1]):
            paths.append(relative.as_posix())
    return sorted(paths)


def is_validation(relative_path, fraction=0.05):
    """Whether the file at `relative_path` is held out: a stable SHA-1 split."""
    digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def split_files(paths, fraction=0.05):
    """`(train_paths, validation_paths)`, each in the order of `paths`."""
    validation = [path for path in paths if is_validation(path, fraction)]
    held_out = set(validation)
    return [path for path in paths if path not in held_out], validation


def file_documents(source):
    """The top-level functions and classes of Python `source` (str), as bytes.

    Each document runs from its first decorator (or its `def`/`class` line) to
    its last line, whole lines, with their newlines. Returns `[]` for source
    that does not parse.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte in the source
        return []
    lines = source.splitlines(keepends=True)
    documents = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            text = "".join(lines[first - 1 : node.end_lineno])
            documents.append(text.encode("utf-8"))
    return documents


def read_documents(paths, root=None):
    """The documents of the files at `paths` (relative to `root`), in order."""
    root = pathlib.Path(root) if root is not None else stdlib_root()
    documents = []
    for path in paths:
        try:
            source = (root / path).read_bytes().decode("utf-8")
        except UnicodeDecodeError:  # none in CPython 3.11; a patched library
            continue
        documents.extend(file_documents(source))
    return documents


def as_token_ids(documents):
    """Each document (bytes) as a 1-D uint8 array of token ids, the bytes."""
    return [np.frombuffer(document, dtype=np.uint8) for document in documents]


def xz_bits_per_byte(documents):
    """Bits per byte of `xz -9e` (`lzma`, preset 9 | PRESET_EXTREME) on the
    documents joined into one stream: `8 * compressed / raw` bytes."""
    raw = b"".join(documents)
    compressed = lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
    return 8.0 * len(compressed) / len(raw)
