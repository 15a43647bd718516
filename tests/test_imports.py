"""Layers point one way: every part of Foveal sits in one layer of an ordered list and imports only
parts below it; the import graph has no cycle, and no import inside a function hides an edge. The
checks are shown to fail on a graph that breaks them."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import foveal

SOURCE = Path(foveal.__file__).parent

# Every part of src/foveal (a top-level module or package), lowest layer first. A part imports only
# parts of lower layers: never a part above it, never a peer in its own layer (so the workflows of
# one layer, training, exporting, serving and reporting, never import each other).
LAYERS: list[set[str]] = [
    {"errors"},
    {"foveal", "messages", "io", "runtime", "config"},  # "foveal": the package root, its version
    {"machine", "data", "models"},
    {"pretrained"},  # public checkpoints (timm ViT/DeiT) read as models: config, weights, classes
    {"runs", "predictor"},  # run folders; a trained model you call (loading, inference, ONNX, open set)
    {"evaluation"},
    {"explanation"},
    # Where a run is recorded (results.csv, TensorBoard, MLflow): the training loop calls it; it draws
    # the end's pictures with evaluation's and explanation's code, so it sits above them.
    {"tracking"},
    {"training", "exporting", "serving", "reporting"},
    {"api"},
    {"compare"},
    {"cli"},
    {"__main__"},
]
LAZY_ALLOWED = {"cli"}  # the command line imports its commands' libraries on use, to start fast


def part_of(module: str) -> str:
    """foveal.models.layers.attention -> models; foveal.errors -> errors."""
    return module.split(".")[1] if module.count(".") >= 1 else "foveal"


def module_name(path: Path) -> str:
    relative = path.relative_to(SOURCE.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def foveal_imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(imported foveal module, inside a function?) for every import statement of a file."""
    name = module_name(path)
    yield from imports_of(path.read_text(), name if path.name == "__init__.py" else name.rpartition(".")[0])


def imports_of(text: str, package: str) -> Iterator[tuple[str, bool]]:
    """(imported foveal module, inside a function?) for the import statements of Python `text` in
    `package`. `from foveal import api` imports the module foveal.api, not the package foveal."""
    tree = ast.parse(text)
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
            names = [f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base for a in node.names]
        else:
            continue
        for name in names:
            if name == "foveal" or name.startswith("foveal."):
                yield name, id(node) in nested


def is_module(name: str) -> bool:
    """Whether `name` (foveal.x.y) is a module or package of src/foveal."""
    path = SOURCE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


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
            if level == "part" and part_of(target) != part_of(name):
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


def layer_violations(graph: dict[str, set[str]], layers: list[set[str]]) -> list[str]:
    """Each edge of a part graph that imports a peer or a part above, or a part in no layer."""
    level = {part: n for n, parts in enumerate(layers) for part in parts}
    found = [
        f"{part} is in no layer" for part in sorted({*graph, *set().union(*graph.values())} - set(level))
    ]
    for part, targets in sorted(graph.items()):
        for target in sorted(targets & set(level)):
            if part in level and level[target] >= level[part]:
                where = "a peer" if level[target] == level[part] else "above it"
                found.append(f"{part} imports {target}, {where}")
    return found


def test_every_part_is_in_one_layer() -> None:
    parts = {path.stem for path in SOURCE.glob("*.py")} | {
        path.parent.name for path in SOURCE.glob("*/__init__.py")
    }
    parts = {"foveal" if part == "__init__" else part for part in parts}
    listed = [part for layer in LAYERS for part in layer]
    assert sorted(listed) == sorted(set(listed)), "a part is in two layers"
    assert parts == set(listed)


def test_layers_point_one_way() -> None:
    graph, _ = import_graph()
    assert layer_violations(graph, LAYERS) == []


def test_the_layer_check_fails_on_an_edge_up_or_across() -> None:
    """Edges the checks once missed: `from foveal import api` in models/flops.py, and
    `from foveal.serving import app` in training/ema.py."""
    graph, _ = import_graph()
    for text, package, part in (
        ("from foveal import api", "foveal.models", "models"),
        ("from foveal.serving import app", "foveal.training", "training"),
        ("from ..predictor import classifier", "foveal.data", "data"),
    ):
        [(target, _)] = imports_of(text, package)
        broken = {**graph, part: graph[part] | {part_of(target)}}
        assert layer_violations(broken, LAYERS) != [], text
    assert layer_violations({"models": {"api"}, "training": {"serving"}, "new": {"errors"}}, LAYERS) == [
        "new is in no layer",
        "models imports api, above it",
        "training imports serving, a peer",
    ]


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
