"""``__all__`` of every public module of xbkg (the package is walked, so new modules are covered).

Each public module (no part of its name starting with ``_``) has an ``__all__`` without
duplicates whose names all exist; every public function and class it defines is in it; and
every name another xbkg module imports from it is in it (or private). A package whose
``__init__`` only groups submodules (defines no public name) needs no ``__all__``.
"""

import ast
import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path

import pytest

import xbkg

PACKAGE = Path(xbkg.__file__).parent

#: Public-looking names a module may leave out of its ``__all__``, with the reason.
NOT_EXPORTED = {
    # the subcommand handlers and their error are reached through main() and the parser
    "xbkg.cli": re.compile(r"cmd_\w+|CLIError"),
    # axis labels shared by the plot modules; __all__ of a plot module lists its figures
    "xbkg.plots.model": re.compile(r"[A-Z]+_LABEL"),
}


def _not_exported(module_name: str, name: str) -> bool:
    skip = NOT_EXPORTED.get(module_name)
    return bool(skip and skip.fullmatch(name))


def _module_names() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(xbkg.__path__, "xbkg.")]
    return ["xbkg"] + sorted(n for n in names if not any(p.startswith("_") for p in n.split(".")))


PUBLIC_MODULES = _module_names()


def _public_names(module) -> set[str]:
    return {n for n, obj in vars(module).items()
            if not n.startswith("_") and not isinstance(obj, types.ModuleType)}


def _defined_here(module) -> set[str]:
    """Public functions and classes defined in ``module`` itself."""
    return {n for n, obj in vars(module).items()
            if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__ and not _not_exported(module.__name__, n)}


def _imports_between_modules() -> dict[str, set[tuple[str, str]]]:
    """``{module: {(name, importing file)}}`` for every ``from xbkg.x import name`` in xbkg."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module and (
                    node.module == "xbkg" or node.module.startswith("xbkg.")):
                for alias in node.names:
                    found.setdefault(node.module, set()).add(
                        (alias.name, str(path.relative_to(PACKAGE.parent))))
    return found


def test_the_walk_finds_every_layer_and_many_modules():
    assert len(PUBLIC_MODULES) > 60
    for name in ("xbkg.core.schema", "xbkg.building.reduce", "xbkg.io.gadf", "xbkg.testing",
                 "xbkg.cli", "xbkg.simulate"):
        assert name in PUBLIC_MODULES


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_complete_and_every_name_in_it_exists(name):
    module = importlib.import_module(name)
    is_package = hasattr(module, "__path__")
    if is_package and not _public_names(module) and not hasattr(module, "__all__"):
        return  # a package that only groups submodules
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"{name}: duplicates in __all__"
    assert all(isinstance(n, str) for n in names)
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    left_out = _defined_here(module) - set(names)
    assert not left_out, f"{name} defines public names missing from __all__: {sorted(left_out)}"


def test_names_imported_between_modules_are_in_all_or_private():
    wrong = []
    for source, imported in _imports_between_modules().items():
        try:
            module = importlib.import_module(source)
        except ImportError:
            wrong.append(f"{source} does not import")
            continue
        exported = set(getattr(module, "__all__", ()))
        for name, where in sorted(imported):
            if name.startswith("_") or name in exported or _not_exported(source, name):
                continue
            if isinstance(getattr(module, name, None), types.ModuleType):
                continue  # a submodule
            wrong.append(f"{where} imports {source}.{name}")
    assert not wrong, "names imported from other modules but not in their __all__: " + \
        "; ".join(wrong)


def test_the_checks_catch_a_missing_name():
    """The completeness rule fails on a module that leaves a public function out."""
    module = types.ModuleType("xbkg_fake")

    def kept():
        pass

    def forgotten():
        pass

    for func in (kept, forgotten):
        func.__module__ = module.__name__
        setattr(module, func.__name__, func)
    module.__all__ = ["kept"]
    assert _defined_here(module) - set(module.__all__) == {"forgotten"}
