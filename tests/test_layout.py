"""The package layout stays true: every module imports, lower layers never
import higher ones, and no two modules import each other in a circle.

The table below is the design (README "Layout", ``docs/architecture.md``):
a subpackage may import itself and the layers it lists. Every import counts,
also the ones inside functions (a lazy import still ties the layers).
"""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import sser_lobes

PACKAGE = Path(sser_lobes.__file__).parent

#: layer -> the layers it may import (besides itself)
ALLOWED = {
    "errors": set(),
    "encoders": {"errors"},
    "nnet": {"errors", "encoders"},
    "dataio": {"errors"},
    "text": {"errors", "encoders", "dataio"},
    "evaluation": {"errors", "dataio"},
    "training": {"errors", "encoders", "nnet", "dataio", "text", "evaluation"},
    "inference": {"errors", "encoders", "nnet", "dataio", "text", "evaluation"},
    "synthetic": {"errors", "dataio"},
}

#: thin modules at the top: the package's lazy re-exports and the entry points
#: kept under their documented names (``python -m sser_lobes.export``)
ENTRY_POINTS = {
    "sser_lobes",
    "sser_lobes.export",
    "sser_lobes.tiny_ssl",
    "sser_lobes.timeline_eval",
}


def all_modules():
    names = ["sser_lobes"]
    for info in pkgutil.walk_packages([str(PACKAGE)], "sser_lobes."):
        names.append(info.name)
    return sorted(names)


def module_file(name):
    parts = name.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    if path.is_dir():
        return path / "__init__.py"
    return path.with_suffix(".py")


def imported_modules(name, source=None):
    """Every ``sser_lobes`` module that ``name`` imports, anywhere in its code
    (a ``from sser_lobes.x import y`` counts ``sser_lobes.x.y`` when ``y`` is
    a module); ``source`` replaces the module's own text."""
    file = module_file(name)
    if source is None:
        source = file.read_text(encoding="utf-8")
    tree = ast.parse(source)
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module]
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                if module_file(candidate).exists() and candidate.startswith(
                    "sser_lobes."
                ):
                    targets.append(candidate)
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] == "sser_lobes")
    found.discard(name)
    return found


def layer(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = all_modules()


def test_the_layout_has_the_documented_layers():
    """Every subpackage (and the errors module) is in the table, and the
    table has no layer that does not exist."""
    top = {layer(m) for m in MODULES if m not in ENTRY_POINTS}
    assert top == set(ALLOWED)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    importlib.import_module(name)


def test_every_module_says_what_it_owns():
    missing = [
        m
        for m in MODULES
        if not ast.get_docstring(ast.parse(module_file(m).read_text(encoding="utf-8")))
    ]
    assert not missing, f"modules without a docstring: {missing}"


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for name in MODULES:
        if name in ENTRY_POINTS:
            continue
        own = layer(name)
        for target in imported_modules(name):
            other = layer(target)
            if target == "sser_lobes" or other == own:
                continue  # the package root (its version), or the same layer
            if target in ENTRY_POINTS:
                wrong.append(f"{name} imports the entry point {target}")
                continue
            if other not in ALLOWED[own]:
                wrong.append(f"{name} ({own}) imports {target} ({other})")
    assert not wrong, "imports against the layer table:\n" + "\n".join(wrong)


def test_no_import_circle_between_modules():
    graph = {name: imported_modules(name) for name in MODULES}
    # a package's __init__ is imported with each of its modules: not an edge
    # of the code's design, so packages are left out of the graph
    packages = {m for m in MODULES if module_file(m).name == "__init__.py"}
    graph = {
        m: {t for t in targets if t in graph and t not in packages}
        for m, targets in graph.items()
        if m not in packages
    }
    state, stack, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_checker_sees_a_wrong_import():
    """The direction check is not vacuous: an import of training written into
    a dataio module, even inside a function, is found and not allowed."""
    name = "sser_lobes.dataio.chunking"
    source = module_file(name).read_text(encoding="utf-8")
    source += "\n\ndef f():\n    from sser_lobes.training import recipe\n"
    found = imported_modules(name, source)
    assert "sser_lobes.training.recipe" in found
    assert "training" not in ALLOWED[layer(name)]
