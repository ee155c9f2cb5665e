"""The dependency direction of ``../shared/docs/conventions.md``, read from every module's imports (``ast``).

Packages are the first level below ``tfrs_selreg`` (a top-level module such as ``regularizer.py`` counts as
its own package); an import inside a function counts like one at the top.
"""

import ast
import collections
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tfrs_selreg"
NO_TEACHER = ("models", "layers", "losses", "export")


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tfrs_selreg"


def _imports() -> dict[str, set[str]]:
    """``{module: modules of tfrs_selreg it imports}`` for every module under ``tfrs_selreg/``."""
    out = {}
    for path in ROOT.rglob("*.py"):
        module = ".".join(("tfrs_selreg",) + path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        out[module] = {n for n in names if n == "tfrs_selreg" or n.startswith("tfrs_selreg.")}
    return out


def test_the_library_never_imports_the_command_line():
    offenders = sorted((m, n) for m, names in _imports().items() if _package(m) != "cli"
                       for n in names if n.startswith("tfrs_selreg.cli"))
    assert not offenders


def test_no_two_packages_import_each_other():
    graph = collections.defaultdict(set)
    for module, names in _imports().items():
        for name in names:
            if name != "tfrs_selreg" and _package(name) != _package(module):
                graph[_package(module)].add(_package(name))
    cycles = sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph.get(b, ()))
    assert not cycles


def test_models_layers_losses_and_export_import_no_teacher():
    offenders = sorted((m, n) for m, names in _imports().items() if _package(m) in NO_TEACHER
                       for n in names if n.startswith("tfrs_selreg.teachers"))
    assert not offenders


def test_the_library_never_imports_the_beam_jobs():
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                       [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(m.split(".")[0] == "beam_pipelines" for m in modules), path


def test_no_module_over_400_lines():
    """Modules split by concept (../shared/docs/conventions.md): none under the library or the jobs is long."""
    roots = (ROOT, ROOT.parent / "beam_pipelines")
    long = sorted((str(path.relative_to(ROOT.parent)), n) for root in roots for path in root.rglob("*.py")
                  if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400)
    assert not long
