"""The package layout (docs/architecture.md): modules import downward only and never in a circle; TRL is imported
only under deita_hf/training/, which nothing else imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deita_hf"

# From the bottom up. A module may import modules of its own layer or of a lower one; "" is deita_hf/__init__.py.
LAYERS = [
    ["constants", "errors"],
    ["pool", "formats", "testing", "tokenization", "distributed", "config"],
    ["modeling"],
    ["chat_template", "scoring", "embedding", "selection", "strategies", "subset"],
    ["report", "released", "scorers.generation", "scorers.evol"],
    ["hub", "scorers.ranking"],
    ["io", "scorers", "scorers.data", "evaluation"],
    ["pipeline.config", "pipeline.shards", "pipeline.summary"],
    ["pipeline.steps"],
    ["pipeline", "pipeline.run"],
    ["training", "training.data", "training.common", "training.sft", "training.dpo", "training.scorer"],
    ["cli", ""],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """The package modules (names relative to deita_hf) and the top-level outside packages that ``path`` imports,
    at the top or inside a function."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "deita_hf":
                    inside.add(alias.name.removeprefix("deita_hf").lstrip("."))
                else:
                    outside.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
            elif node.module.split(".")[0] == "deita_hf":
                base = node.module.split(".")[1:]
            else:
                outside.add(node.module.split(".")[0])
                continue
            for alias in node.names:
                candidate = ".".join([*base, alias.name])
                is_module = (PACKAGE / (candidate.replace(".", "/") + ".py")).exists() or (
                    PACKAGE / candidate.replace(".", "/")
                ).is_dir()
                inside.add(candidate if is_module else ".".join(base))
    inside.discard(name)
    return inside, outside


GRAPH = {module_name(path): imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    assert sorted(set(GRAPH) - set(LAYER)) == []
    assert sorted(set(LAYER) - set(GRAPH)) == []


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{module or 'deita_hf'} (layer {LAYER[module]}) imports {other} (layer {LAYER[other]})"
        for module, (inside, _) in GRAPH.items()
        for other in sorted(inside)
        if LAYER[other] > LAYER[module]
    ]
    assert upward == []


def test_no_module_imports_itself_through_others():
    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for other in GRAPH[todo.pop()][0]:
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        return seen

    cycles = [
        {module, other} for module, (inside, _) in GRAPH.items() for other in inside if module in reachable(other)
    ]
    assert cycles == []


def test_trl_is_imported_only_under_training():
    users = sorted(module for module, (_, outside) in GRAPH.items() if "trl" in outside)
    assert users and all(module.split(".")[0] == "training" for module in users)


def test_importing_everything_outside_training_loads_neither_trl_nor_training():
    modules = [f"deita_hf.{name}" if name else "deita_hf" for name in GRAPH if name.split(".")[0] != "training"]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'trl' or m.startswith(('trl.', 'deita_hf.training'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
