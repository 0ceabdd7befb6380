"""One self-contained Python file from a project module and the project modules it imports.

A diffusers custom pipeline is a single ``pipeline.py`` that diffusers imports from the model folder
(``DiffusionPipeline.from_pretrained(folder, custom_pipeline=folder)``); it may import installed
libraries but not s3jedi. ``bundle("core.jedi.pipeline")`` reads the module's source and, depth
first, the source of every project module it imports from, and writes them one after the other in
dependency order, with the project imports removed (the names they imported are now defined above
them in the same file) and the library imports gathered at the top. It is generated from the code
at the moment of the export, so the file always matches the pipeline the project itself runs.

Only what can be bundled faithfully is accepted; anything else is an error naming the module and
line: ``from core.x import name`` at module level (``as`` aliases included) is the one import form
of project code, and two bundled modules may not define the same top-level name.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_PACKAGES = ("core",)
"""Packages whose modules are copied into the bundle; everything else must be installed."""


class BundleError(ValueError):
    """The module cannot be bundled into one file; ``str()`` names the module and line."""


@dataclass
class _Module:
    name: str
    path: Path
    docstring: str
    library_imports: list[ast.Import | ast.ImportFrom] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)  # ``local = original`` for ``import x as local``
    body: list[str] = field(default_factory=list)
    defines: set[str] = field(default_factory=set)
    needs: list[str] = field(default_factory=list)  # project modules, in import order


def _is_project(module: str | None, packages: tuple[str, ...]) -> bool:
    return bool(module) and module.split(".")[0] in packages


def _source_path(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise BundleError(f"{module}: no Python source found")
    return Path(spec.origin)


def _defining_module(module: str, name: str, where: str, packages: tuple[str, ...]) -> str:
    """The module that defines ``name`` when it is imported from a package's ``__init__``."""
    path = _source_path(module)
    if path.name != "__init__.py":
        return module
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and _is_project(node.module, packages):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    if alias.asname:
                        raise BundleError(f"{where}: {module}.{name} is a renamed re-export; import it from its module")
                    return _defining_module(node.module, alias.name, where, packages)
    return module


def _top_level_names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    names = set()
    for target in targets:
        names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def _parse(module: str, packages: tuple[str, ...]) -> _Module:
    path = _source_path(module)
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    parsed = _Module(module, path, ast.get_docstring(tree) or "")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_is_project(a.name, packages) for a in node.names):
            raise BundleError(f"{module} line {node.lineno}: `import {node.names[0].name}`; use `from ... import name`")
        if (
            isinstance(node, ast.ImportFrom)
            and (node.level or _is_project(node.module, packages))
            and node not in tree.body
        ):
            raise BundleError(f"{module} line {node.lineno}: a project import inside a function cannot be bundled")
    for i, node in enumerate(tree.body):
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        text = "\n".join(lines[first - 1 : node.end_lineno])
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.ImportFrom) and node.level:
            raise BundleError(f"{module} line {node.lineno}: relative imports cannot be bundled")
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.ImportFrom) and _is_project(node.module, packages):
            for alias in node.names:
                where = f"{module} line {node.lineno}"
                parsed.needs.append(_defining_module(node.module, alias.name, where, packages))
                if alias.asname and alias.asname != alias.name:
                    parsed.aliases.append(f"{alias.asname} = {alias.name}")
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            parsed.library_imports.append(node)
            continue
        if _top_level_names(node) == {"__all__"}:
            continue
        parsed.defines |= _top_level_names(node)
        parsed.body.append(text)
    return parsed


def _order(root: str, packages: tuple[str, ...]) -> list[_Module]:
    order: list[_Module] = []
    seen: dict[str, _Module | None] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen:
            if seen[name] is None:
                raise BundleError(f"import cycle: {' -> '.join((*chain, name))}")
            return
        seen[name] = None
        module = _parse(name, packages)
        for need in dict.fromkeys(module.needs):
            visit(need, (*chain, name))
        seen[name] = module
        order.append(module)

    visit(root, ())
    return order


def _import_block(nodes: list[ast.Import | ast.ImportFrom]) -> str:
    """The library imports of every module, merged per module and sorted: standard library first."""
    plain: set[str] = set()
    names: dict[str, set[str]] = {}
    for node in nodes:
        for alias in node.names:
            text = alias.name + (f" as {alias.asname}" if alias.asname else "")
            if isinstance(node, ast.Import):
                plain.add(text)
            else:
                names.setdefault(node.module or "", set()).add(text)
    lines = [(name.split(".")[0], f"import {name}") for name in plain]
    lines += [(module.split(".")[0], f"from {module} import {', '.join(sorted(n))}") for module, n in names.items()]

    def key(item: tuple[str, str]) -> tuple[bool, str]:
        top, text = item
        return top not in sys.stdlib_module_names, text.split()[1]

    return "\n".join(text for _, text in sorted(lines, key=key))


def bundle(root: str, header: str, packages: tuple[str, ...] = PROJECT_PACKAGES) -> str:
    """The source of ``root`` and the modules of ``packages`` it imports as one file; ``header`` opens
    its docstring, followed by the root module's own docstring."""
    modules = _order(root, packages)
    owner: dict[str, str] = {}
    for m in modules:
        for name in m.defines:
            if name in owner:
                raise BundleError(f"{name} is defined by both {owner[name]} and {m.name}; rename one to bundle them")
            owner[name] = m.name
    imports = _import_block([node for m in modules for node in m.library_imports])
    doc = f"{header}\n\n{modules[-1].docstring}".replace('"""', "'''").rstrip()
    parts = [f'"""{doc}\n"""', "from __future__ import annotations", imports]
    for m in modules:
        summary = m.docstring.splitlines()[0] if m.docstring else ""
        section = [f"# {'-' * 96}", f"# {m.name}" + (f": {summary}" if summary else ""), f"# {'-' * 96}"]
        parts.append("\n".join(section + m.aliases))
        parts.extend(m.body)
    return "\n\n\n".join(p for p in parts if p) + "\n"


def module_names(root: str, packages: tuple[str, ...] = PROJECT_PACKAGES) -> list[str]:
    """The modules ``bundle(root)`` writes, in the order it writes them."""
    return [m.name for m in _order(root, packages)]
