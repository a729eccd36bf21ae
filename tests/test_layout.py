"""The architecture as tests: engine/ imports only NumPy and the standard library; mlflow lives
in one wing of sweep/ (track/), matplotlib and seaborn in one package (report/figures/); no
module of sweep/ imports itself back through another."""

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
        "mlflow": "sweep/track/",
        "matplotlib": "sweep/report/figures/",
        "seaborn": "sweep/report/figures/",
    }
    for path in (ROOT / "sweep").rglob("*.py"):
        where = path.relative_to(ROOT).as_posix()
        for library, owner in owners.items():
            if library in imported_top_names(path):
                assert where.startswith(owner), f"{where} imports {library}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sweep_imports(path: Path) -> set[str]:
    """The sweep modules a module imports, relative (`from ..x import y`, `from . import x`) or
    absolute, resolved to full names (a name that is a package resolves to its __init__)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "sweep":
                continue
            if node.module:
                found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}  # `from . import x`
    return found


def test_sweep_has_no_import_cycle() -> None:
    paths = {module_name(p): p for p in (ROOT / "sweep").rglob("*.py")}
    graph = {name: {m for m in sweep_imports(p) if m in paths} for name, p in paths.items()}
    # (the resolution finds relative imports at every depth)
    assert {"sweep.trial", "sweep.store.study"} <= graph["sweep.runner"]
    assert {"sweep.trial", "sweep.track.store"} <= graph["sweep.track.tracker"]
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


def test_the_figures_draw_from_the_report_view_only() -> None:
    figures = ROOT / "sweep" / "report" / "figures"
    modules = {module_name(p) for p in (ROOT / "sweep").rglob("*.py")}
    used = set().union(*(sweep_imports(p) for p in figures.glob("*.py"))) & modules
    outside = {m for m in used if not m.startswith("sweep.report.figures")}
    assert outside <= {"sweep.report.view", "sweep.trial"}, outside
