"""The package layout is the data flow, and the tests keep it so.

Each subpackage may import only from the layers below it::

    paths, atomic                      where files live, how they are written
    data, core, offline_model          edit data in; model anatomy, hooks, statistics, records
    editors                            the editor lifecycle and every implementation
    stream, api                        a stream of edits on one model; ``lm_edit.edit``
    evaluation                         the lm-eval model (``edited-hf``), tasks and metrics
    studies, saving                    sweep, report, capability suite; ``lm-edit save``
    cli, _plugin                       the command line and the lm-eval bridge

Nothing below ``evaluation`` imports lm-eval, so editing works (and is tested) without it,
and no two modules import each other at module level.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lm_edit"
LAYERS = {
    "paths": 0,
    "atomic": 0,
    "data": 1,
    "core": 1,
    "offline_model": 1,
    "editors": 2,
    "stream": 3,
    "api": 4,
    "evaluation": 5,
    "studies": 6,
    "saving": 6,
    "cli": 7,
    "_plugin": 7,
}
BELOW_EVALUATION = [
    "lm_edit.core",
    "lm_edit.data",
    "lm_edit.editors",
    "lm_edit.stream",
    "lm_edit.api",
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The ``lm_edit`` modules ``path`` imports (absolute imports; the package uses no
    relative ones)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("lm_edit.")}


def _layer(module: str) -> str:
    return module.split(".")[1]


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent.name != "_pth")


def test_every_subpackage_has_a_layer():
    top = {_layer(_module_name(p)) for p in SOURCES if _module_name(p) != "lm_edit"}
    assert top <= set(LAYERS), f"give {sorted(top - set(LAYERS))} a layer in LAYERS"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: _module_name(p))
def test_imports_go_down_the_layers(source):
    module = _module_name(source)
    if module == "lm_edit":
        return  # the package root re-exports lazily
    own = LAYERS[_layer(module)]
    upward = sorted(
        name
        for name in _imports(source, top_level_only=False)
        if LAYERS.get(_layer(name), -1) > own
    )
    assert not upward, f"{module} (layer {own}) imports from a higher layer: {upward}"


def test_no_import_cycles_at_module_level():
    modules = {_module_name(p): p for p in SOURCES}
    graph = {
        name: {m for m in _imports(path, top_level_only=True) if m in modules and m != name}
        for name, path in modules.items()
    }
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_editing_does_not_import_lm_eval():
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in BELOW_EVALUATION)
        + "from lm_edit.editors.registry import implementations\n"
        + "implementations()\n"
        + "loaded = sorted(m for m in sys.modules if m == 'lm_eval' or m.startswith('lm_eval.'))\n"
        + "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
