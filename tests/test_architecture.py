"""The layering rules of docs/architecture.md, checked on the source tree.

cli -> pipeline/execution -> concerns -> core, enforced by import-linter (contract in
pyproject.toml); plus what import-linter does not check: no import cycle between any two modules
(function-level imports included), click only in the CLI layer, and no function over 80 lines
unless its docstring says why.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "sc_inverse"
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "checkpoints" not in p.parts)


def test_import_layer_contract_holds():
    """import-linter's contracts (pyproject.toml [tool.importlinter]) are kept."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph has a few hundred modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_no_import_cycles_between_modules():
    """No two modules import each other, directly or through others (type-checking imports excepted)."""
    graph = grimp.build_graph("sc_inverse", exclude_type_checking_imports=True, cache_dir=None)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    # A package's __init__ importing its own submodules is not a cycle between modules.
    for module, targets in edges.items():
        targets.difference_update(t for t in list(targets) if t.startswith(module + "."))
    cycles = [c for c in _strongly_connected(edges) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_click_only_in_cli_layer():
    offenders = []
    for path in _modules():
        if "cli" in path.relative_to(PACKAGE).parts[:1]:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "click" or n.startswith("click.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"click imported outside sc_inverse.cli: {offenders}"


def _long_functions() -> list[str]:
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            n_lines = node.end_lineno - node.lineno + 1
            doc = ast.get_docstring(node) or ""
            if n_lines > MAX_FUNCTION_LINES and "long because" not in doc.lower():
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n_lines} lines)")
    return found


def test_no_function_over_80_lines_without_a_reason():
    """A longer function says why in its docstring ("... long because ...")."""
    assert not _long_functions()


@pytest.mark.parametrize("lines, reason, expected", [(90, "", 1), (90, "Long because X.", 0), (20, "", 0)])
def test_length_rule_detects_long_functions(tmp_path, monkeypatch, lines, reason, expected):
    body = "\n".join(f"    x{i} = {i}" for i in range(lines))
    (tmp_path / "m.py").write_text(f'def f():\n    """{reason or "Short."}"""\n{body}\n')
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert len(_long_functions()) == expected


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [c for c in _strongly_connected(graph) if len(c) > 1] == [["a", "b", "c"]]
