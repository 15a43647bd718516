"""Layers point one way: the import graph between Foveal's parts has no cycle, no import inside a
function hides one, and the rules that keep models, training and the report apart hold."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import foveal

SOURCE = Path(foveal.__file__).parent

# part -> parts it must never import (directly or through a function-level import)
FORBIDDEN = {
    "models": {"data", "training", "evaluation", "explanation", "reporting", "compare", "cli", "api"},
    "data": {"models", "training", "evaluation", "explanation", "reporting", "compare", "cli", "api"},
    "training": {"reporting", "explanation", "compare", "cli", "api", "classifier"},
    "evaluation": {"training", "explanation", "reporting", "compare", "cli", "api"},
    "explanation": {"classifier", "training", "reporting", "compare", "cli", "api"},
    "reporting": {"training", "compare", "cli", "api"},
    "compare": {"cli", "training"},
    "exporting": {"training", "reporting", "compare", "cli", "api"},
    "serving": {"training", "reporting", "compare", "cli", "api"},
}
LAZY_ALLOWED = {"cli"}  # the command line imports its commands' libraries on use, to start fast


def part_of(module: str) -> str:
    """foveal.models.layers.attention -> models; foveal.saved -> saved."""
    return module.split(".")[1] if module.count(".") >= 1 else "foveal"


def module_name(path: Path) -> str:
    relative = path.relative_to(SOURCE.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def foveal_imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(imported foveal module, inside a function?) for every import statement of a file."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            names = [base]
        else:
            continue
        for name in names:
            if name == "foveal" or name.startswith("foveal."):
                yield name, id(node) in nested


def import_graph(level: str = "part") -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """The graph {node: nodes it imports} between parts (level="part") or modules ("module"), and
    the function-level imports (file, module). A package's __init__ re-exporting its modules is
    not an edge of the module graph (importing foveal.models.x runs it, but x never needs it)."""
    graph: dict[str, set[str]] = {}
    lazy = []
    for path in sorted(SOURCE.rglob("*.py")):
        name = module_name(path)
        for target, in_function in foveal_imports(path):
            if in_function:
                lazy.append((str(path.relative_to(SOURCE)), target))
            if level == "part" and part_of(target) != part_of(name) and target != "foveal":
                graph.setdefault(part_of(name), set()).add(part_of(target))
            elif level == "module" and path.name != "__init__.py" and target != name:
                graph.setdefault(name, set()).add(target)
    return graph, lazy


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of nodes, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_parts_and_the_modules_import_each_other_without_a_cycle() -> None:
    for level in ("part", "module"):
        graph, _ = import_graph(level)
        assert find_cycle(graph) is None, f"{level} import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_import_inside_a_function_outside_the_command_line() -> None:
    _, lazy = import_graph()
    hidden = [(file, module) for file, module in lazy if file.split("/")[0] not in LAZY_ALLOWED]
    assert hidden == [], f"function-level imports of Foveal modules: {hidden}"


def test_layers_point_one_way() -> None:
    graph, _ = import_graph()
    broken = {part: sorted(graph.get(part, set()) & banned) for part, banned in FORBIDDEN.items()}
    assert {part: found for part, found in broken.items() if found} == {}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def layers_importing_families(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(layer, module) pairs where a building block of models/layers/ imports a family file or the
    registry: layers may import other layers and the model contract only, as timm's do."""
    allowed = ("foveal.models.layers", "foveal.models.contract")
    return sorted(
        (module, target)
        for module, targets in graph.items()
        if module.startswith("foveal.models.layers.")
        for target in targets
        if target.startswith("foveal.models") and not target.startswith(allowed)
    )


def test_model_layers_import_no_family() -> None:
    graph, _ = import_graph("module")
    assert any(module.startswith("foveal.models.layers.") for module in graph)
    assert layers_importing_families(graph) == []


def test_the_layer_rule_finds_a_planted_family_import() -> None:
    planted = {"foveal.models.layers.trunk": {"foveal.models.hybrid", "foveal.models.layers.output"}}
    assert layers_importing_families(planted) == [("foveal.models.layers.trunk", "foveal.models.hybrid")]
