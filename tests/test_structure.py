"""The package's import graph: lower layers never import higher ones, no module imports itself back, and the CLI starts without peft."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import auxol

SOURCE = Path(auxol.__file__).parent
LOWER = ("auxol.models", "auxol.data", "auxol.online")
UPPER = ("auxol.finetune", "auxol.stream", "auxol.serve", "auxol.commands", "auxol.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The auxol modules that ``path`` imports anywhere (module level or inside functions).

    ``from package import name`` depends on the module ``package.name`` when there is
    one, else on ``package`` (its ``__init__``).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in SOURCE.rglob("*.py")}
    return {name: imports_of(path, name, set(paths)) for name, path in paths.items()}


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def test_lower_layers_import_nothing_above_them():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if within(module, LOWER)
        for target in targets
        if within(target, UPPER)
    )
    assert upward == []


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_command_line_starts_without_peft_the_trainer_or_the_web_server():
    unused = ("peft", "auxol.finetune.trainer", "fastapi", "uvicorn")
    code = f"import sys, auxol.cli; print(sorted(m for m in {unused!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
