"""The architecture as tests: engine/ imports only NumPy and the standard library; mlflow lives
in one module of sweep/, matplotlib and seaborn in one package (sweep/figures/)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("optuna", "mlflow", "pandas", "seaborn", "matplotlib", "sweep", "click")


def imported_top_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_engine_imports_only_numpy_and_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"numpy", "engine"}
    for path in (ROOT / "engine").rglob("*.py"):
        extra = imported_top_names(path) - allowed
        assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}"


def test_importing_engine_loads_no_heavy_library() -> None:
    code = f"import sys, engine; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_mlflow_and_plotting_each_live_in_one_place() -> None:
    owners = {
        "mlflow": "sweep/tracking.py",
        "matplotlib": "sweep/figures/",
        "seaborn": "sweep/figures/",
    }
    for path in (ROOT / "sweep").rglob("*.py"):
        where = path.relative_to(ROOT).as_posix()
        for library, owner in owners.items():
            if library in imported_top_names(path):
                assert where.startswith(owner), f"{where} imports {library}"


def sweep_imports(path: Path, level: int = 1) -> set[str]:
    """The sweep/ modules a module imports (`from .x import ...` and `from . import x`; from a
    subpackage, level=2: `from ..x import ...`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == level:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found |= {alias.name for alias in node.names}
    return found


def test_sweep_has_no_import_cycle() -> None:
    graph = {p.stem: sweep_imports(p) for p in (ROOT / "sweep").glob("*.py")}
    graph["figures"] = set().union(
        *(sweep_imports(p, level=2) for p in (ROOT / "sweep" / "figures").glob("*.py"))
    )
    assert graph["figures"] == {"studyview"}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, f"import cycle: {' -> '.join([*path, module])}"
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])
