"""The package's shape, as DESIGN.md draws it: small modules, imports pointing down.

`ops` imports nothing from `layers`, `layers` nothing from `data` or `models`, `data`
nothing from `models`, `models` nothing from `generation`, `inspect` or `export`; no
module imports the package root for what it holds (`import keras_attn`,
`from keras_attn import layers`): a module imports the module it needs
(`from keras_attn.ops import masks`, `from keras_attn import _checks` names the
private module itself).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_attn"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 400
# Each floor may import only the floors below it (and the private top-level
# modules such as `_checks`).
FLOORS = ("ops", "layers", "data", "models")
ABOVE_MODELS = ("generation", "inspect", "export")


def _name(path):
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _imported_modules(path):
    """The `keras_attn...` modules a file imports, by their dotted names."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(
                    ".py"
                ).is_file() or (PACKAGE.parent / candidate.replace(".", "/")).is_dir()
                yield candidate if is_module else node.module


def _subpackage(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_module_fits_in_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_module_does_not_import_the_package_root(path):
    roots = [m for m in _imported_modules(path) if m == "keras_attn"]
    assert not roots, f"{_name(path)} imports names from the keras_attn root"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_imports_point_down_the_floors(path):
    floor = _subpackage(_name(path))
    if floor in FLOORS:
        forbidden = FLOORS[FLOORS.index(floor) + 1 :] + ABOVE_MODELS
    else:
        return
    upward = sorted(
        module
        for module in _imported_modules(path)
        if module.startswith("keras_attn.") and _subpackage(module) in forbidden
    )
    assert not upward, f"{_name(path)} ({floor}) imports {upward}"
