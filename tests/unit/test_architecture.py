"""The package's import rules and module docstrings, read from the source with `ast`.

The rules are the ones docs/architecture.md states: no import cycles, `site/` never imports
`manager/`, `repo/` imports neither, only the adapter and the embedded cluster import the
kubernetes client, only the CLI parses flags, and every module says its job on its first line.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

PACKAGE = "reconciler"
ROOT = Path(__file__).resolve().parents[2]  # the checkout: reconciler/ lives here


@dataclasses.dataclass(frozen=True)
class Import:
    """One import statement's target, as the importing module names it."""

    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (a package's name for `from pkg import name`)
    line: int

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def module_name(path: Path) -> str:
    """`reconciler/site/fence.py` -> `reconciler.site.fence`; a package's `__init__` -> its name."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))
            if "__pycache__" not in path.parts}


def collect_imports(source: str, *, module: str, is_package: bool = False,
                    known: Collection[str] = ()) -> list[Import]:
    """Every import in `source`, nested ones included, resolved to dotted module names.

    `from a.b import c` targets `a.b.c` when that is one of the `known` modules, else `a.b`
    (c is a name defined in a.b). Relative imports resolve against `module`.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = ".".join(package[:len(package) - (node.level - 1)])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.append(Import(module, child if child in known else base, node.lineno))
    return sorted(found, key=lambda i: (i.line, i.target))


def find_cycle(graph: Mapping[str, Collection[str]]) -> list[str] | None:
    """A path `a -> b -> ... -> a` through `graph`, or None when it has no cycle."""
    done: set[str] = set()
    path: list[str] = []  # the modules on the current depth-first path

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if cycle := visit(successor):
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if cycle := visit(start):
            return cycle
    return None


@functools.cache
def all_imports() -> tuple[Import, ...]:
    """Every import of every module of the package."""
    modules = sources()
    found = []
    for name, path in modules.items():
        found += collect_imports(path.read_text(), module=name,
                                 is_package=path.name == "__init__.py", known=modules)
    return tuple(found)


def internal_graph(imports: Collection[Import]) -> dict[str, set[str]]:
    """Module -> the package's own modules it imports (imports of itself left out)."""
    modules = sources()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    return graph


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(*, importers: str, forbidden: str) -> Iterator[str]:
    """Each import by a module in `importers` of anything in `forbidden`."""
    for imp in all_imports():
        if within(imp.module, importers) and within(imp.target, forbidden):
            yield str(imp)


# --- the helpers can fail: they must not pass by finding nothing --------------------------


def test_cycle_finder_reports_a_cycle_as_a_path() -> None:
    """The cycle finder returns the cycle it found as a closed path, and None for a DAG."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_collector_sees_every_form_of_import() -> None:
    """The collector finds top-level, nested, `from` and relative imports, resolved to modules."""
    source = (
        '"""A module."""\n'
        "import reconciler.x\n"
        "from reconciler import errors, __version__\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from reconciler.manager import plan\n"
        "def f():\n"
        "    from reconciler.site import state\n"
        "    import kubernetes.client\n"
        "class C:\n"
        "    def g(self):\n"
        "        from . import fence\n"
        "        from ..repo.bundle import load\n"
    )
    known = {"reconciler", "reconciler.errors", "reconciler.site.state",
             "reconciler.site.fence", "reconciler.repo.bundle", "reconciler.manager.plan"}
    found = collect_imports(source, module="reconciler.site.pipeline", known=known)
    assert [(i.target, i.line) for i in found] == [
        ("reconciler.x", 2), ("reconciler", 3), ("reconciler.errors", 3), ("typing", 4),
        ("reconciler.manager.plan", 6), ("reconciler.site.state", 8), ("kubernetes.client", 9),
        ("reconciler.site.fence", 12), ("reconciler.repo.bundle", 13),
    ]
    init = collect_imports("from . import api\n", module="reconciler.localcluster",
                           is_package=True, known={"reconciler.localcluster.api"})
    assert [i.target for i in init] == ["reconciler.localcluster.api"]


def test_collected_graph_holds_imports_known_to_exist() -> None:
    """Reading the real package finds its modules and the imports we know are there."""
    modules = sources()
    assert {"reconciler.cli", "reconciler.repo.bundle", "reconciler.site.pipeline",
            "reconciler.manager.plan", "reconciler.localcluster.server"} <= modules.keys()
    graph = internal_graph(all_imports())
    assert "reconciler.site.fence" in graph["reconciler.site.pipeline"]
    assert "reconciler.site.pipeline" in graph["reconciler.cli"]  # nested in a function
    assert "reconciler.manager.crdschema" in graph["reconciler.manager.validate"]
    assert "reconciler.localcluster.controllers" in graph["reconciler.localcluster.server"]
    targets = {(i.module, i.target) for i in all_imports()}
    assert ("reconciler.kube", "kubernetes.client") in targets
    assert ("reconciler.manager.kubeschema", "kubernetes_validate") in targets
    assert not within("kubernetes_validate", "kubernetes")  # a different package


# --- the rules ---------------------------------------------------------------------------


def test_no_import_cycles() -> None:
    """No module of the package imports itself through a chain of other modules."""
    cycle = find_cycle(internal_graph(all_imports()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_site_never_imports_the_manager() -> None:
    """Nothing under reconciler/site/ imports reconciler.manager."""
    found = list(violations(importers="reconciler.site", forbidden="reconciler.manager"))
    assert not found, "site/ must not import manager/:\n" + "\n".join(found)


def test_repo_imports_neither_side() -> None:
    """Nothing under reconciler/repo/ imports reconciler.site or reconciler.manager."""
    found = [*violations(importers="reconciler.repo", forbidden="reconciler.site"),
             *violations(importers="reconciler.repo", forbidden="reconciler.manager")]
    assert not found, "repo/ is shared by both sides and imports neither:\n" + "\n".join(found)


def test_only_the_adapter_and_the_local_cluster_import_the_kubernetes_client() -> None:
    """Only reconciler/kube.py and reconciler/localcluster/ import `kubernetes` (not
    `kubernetes_validate`, a different package)."""
    found = [str(imp) for imp in all_imports() if within(imp.target, "kubernetes")
             and imp.module != "reconciler.kube"
             and not within(imp.module, "reconciler.localcluster")]
    assert not found, "only kube.py reaches the kubernetes client:\n" + "\n".join(found)


def test_every_module_opens_with_a_line_on_its_job() -> None:
    """Every module opens with a docstring whose first line is not empty."""
    missing = []
    for name, path in sources().items():
        tree = ast.parse(path.read_text())
        first = tree.body[0] if tree.body else None
        doc = (first.value.value if isinstance(first, ast.Expr)
               and isinstance(first.value, ast.Constant) else None)
        if not isinstance(doc, str) or not doc.splitlines() or not doc.splitlines()[0].strip():
            missing.append(f"{name} ({path.relative_to(ROOT)})")
    assert not missing, "modules without a first line on their job:\n" + "\n".join(missing)


def test_only_the_cli_parses_flags() -> None:
    """Only reconciler/cli.py imports argparse or defines handlers of the parsed `args`;
    other modules take plain options."""
    found = [str(imp) for imp in all_imports()
             if within(imp.target, "argparse") and imp.module != "reconciler.cli"]
    for name, path in sources().items():
        if name == "reconciler.cli":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                    arg.arg == "args" for arg in node.args.posonlyargs + node.args.args):
                found.append(f"{name} (line {node.lineno}) defines {node.name}(args)")
    assert not found, "command handling outside the CLI:\n" + "\n".join(found)
