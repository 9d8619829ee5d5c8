"""The layering of the package (docs/architecture.rst), checked by import-linter and by hand.

The contracts live in ``pyproject.toml``; ``lint-imports`` checks them in CI and this module
checks them in the test command, together with the rules import-linter cannot express.
"""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xbkg"
MODULE_DOCSTRING_LINES = 10
LAYERS = ["core", "io", "sky", "store", "model", "building", "checks", "plots", "report"]


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` (a fresh process: grimp caches per run)."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_import_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, imports", [
    ("xbkg/io/atomic.py", "xbkg.building.make"),       # io reaching above the model schema
    ("xbkg/core/binning.py", "xbkg.store.events"),  # the bottom layer reaching up
    ("xbkg/building/histogram.py", "xbkg.building.make"),  # a cycle inside one layer
])
def test_the_contracts_catch_an_upward_import_or_a_cycle(tmp_path, module, imports):
    """The same contracts fail on a copy of the package with one import added, even inside a
    function (where it would hide from a reader)."""
    shutil.copytree(PACKAGE, tmp_path / "xbkg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n\ndef _added():\n    import {imports}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout


def test_no_module_of_xbkg_is_imported_inside_a_function():
    """Imports of xbkg's own modules sit at the top, so the dependency graph is the one a reader
    sees; heavy third-party packages may still be imported where they are needed."""
    hidden = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                         else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                if isinstance(node, ast.ImportFrom) and node.level:
                    names = ["xbkg (relative)"]
                if any(n == "xbkg" or n.startswith("xbkg") for n in names):
                    hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not hidden, f"imports of xbkg modules inside functions: {hidden}"


def test_every_layer_is_a_package_with_a_short_docstring():
    for layer in LAYERS:
        init = PACKAGE / layer / "__init__.py"
        assert init.exists(), layer
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()) <= 6, layer


def test_every_module_docstring_is_short():
    """A module docstring says what the module is for; the narrative lives in docs/."""
    long = {}
    for path in _modules():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if doc and len(doc.splitlines()) > MODULE_DOCSTRING_LINES:
            long[str(path.relative_to(ROOT))] = len(doc.splitlines())
    assert not long, f"module docstrings over {MODULE_DOCSTRING_LINES} lines: {long}"


#: A measured duration or speed-up written into the code, where it goes stale: "about 0.3 s",
#: "(0.2 s)", "~50 ms", "1.3x faster", "(measured)". Figures belong in docs/performance.rst and
#: docs/benchmarks.md. Durations that are settings or data ("1s", "+-60 s", "by up to 0.93 s")
#: are not matched.
MEASURED_TIMING = re.compile(
    r"\(measured\)"
    r"|\b(about|costs?|took|takes)\s+\d+(\.\d+)?\s?(ms|s|us|µs)\b"
    r"|(~|\()\s?\d+(\.\d+)?\s?(ms|s|us|µs)\b"
    r"|\b\d+(\.\d+)?\s?x (faster|slower)\b"
    r"|\b\d+(\.\d+)?\s?% (faster|slower)\b",
    re.IGNORECASE)


@pytest.mark.parametrize("line, measured", [
    ("costs about 0.3 s per process", True), ("(0.2 s)", True), ("builds it in ~50 ms", True),
    ("about 1.3x faster", True), ("9 is 6x slower for 0.5% less", True),
    ("about 12% of its time (measured)", True), ("is about 8% faster", True),
    ('"distributed.admin.tick.interval": "500ms",', False), ("within +-60 s of it", False),
    ("by up to 0.93 s.", False), ("2**31 s (68 years) per group", False),
])
def test_the_timing_pattern(line, measured):
    assert bool(MEASURED_TIMING.search(line)) is measured


def test_no_measured_timing_in_the_code():
    found = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
             for path in _modules()
             for i, line in enumerate(path.read_text().splitlines(), 1)
             if MEASURED_TIMING.search(line)]
    assert not found, "measured timings belong in docs/performance.rst:\n" + "\n".join(found)


@pytest.mark.subprocess
@pytest.mark.parametrize("old, new", [("xbkg.make", "xbkg.building.make"), ("xbkg.fov", "xbkg.sky.fov"),
                                      ("xbkg.io.products", "xbkg.building.products"),
                                      ("xbkg.validation", "xbkg.checks.crossval"),
                                      ("xbkg.io.dl3", "xbkg.io.index_tables")])
def test_module_names_from_before_the_layout_still_import_with_a_warning(old, new):
    code = (f"import warnings, importlib; warnings.simplefilter('error')\n"
            f"import {new} as new\n"
            f"try:\n    importlib.import_module('{old}')\n"
            f"except DeprecationWarning as w:\n    print('warned:', w)\n"
            f"warnings.simplefilter('ignore')\n"
            f"print('same:', importlib.import_module('{old}') is new)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"warned: {old} is now {new}" in out.stdout and "same: True" in out.stdout


def test_binning_is_declared_next_to_the_edges_it_holds():
    """``Binning`` lives in :mod:`xbkg.core.binning` (sky and building both take it); the
    histogram module still gives the same class to code that imported it from there."""
    import xbkg.building.histogram
    import xbkg.core.binning

    assert xbkg.core.binning.Binning.__module__ == "xbkg.core.binning"
    assert xbkg.building.histogram.Binning is xbkg.core.binning.Binning


def test_the_old_schema_names_forward_from_xbkg_model_with_a_warning():
    import xbkg.core.schema
    import xbkg.model

    with pytest.warns(DeprecationWarning, match="xbkg.core.schema.validate_model"):
        assert xbkg.model.validate_model is xbkg.core.schema.validate_model
    with pytest.raises(AttributeError):
        xbkg.model.no_such_name  # noqa: B018
