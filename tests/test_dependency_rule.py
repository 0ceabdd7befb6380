"""The dependency rule of DEVELOPERS.md, checked on every import statement (module level or inside
functions): core imports no app; datagen/training/serving/evaluation import only core; only
cluster may import the apps."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

APPS = {"datagen", "training", "serving", "evaluation"}
ALLOWED = {"core": set(), **{app: {"core"} for app in APPS}, "cluster": {"core", *APPS}}


def violations(root: Path) -> list[str]:
    found = []
    for pkg, ok in ALLOWED.items():
        for path in sorted((root / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
                    names = [a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in ALLOWED and top != pkg and top not in ok:
                        found.append(f"{path.relative_to(root)}:{node.lineno} imports {name}")
    return sorted(found)


def test_project_follows_the_dependency_rule():
    assert violations(REPO) == []


def test_checker_catches_violations(tmp_path):
    for pkg in ALLOWED:
        (tmp_path / pkg).mkdir()
    (tmp_path / "core" / "a.py").write_text("def f():\n    from datagen.stages import x\n")
    (tmp_path / "serving" / "b.py").write_text("import training.jedi\nimport core.zoo\n")
    (tmp_path / "evaluation" / "c.py").write_text("import importlib\nimportlib.import_module('datagen')\n")
    (tmp_path / "cluster" / "d.py").write_text("import datagen, serving\n")
    assert violations(tmp_path) == [
        "core/a.py:2 imports datagen.stages",
        "evaluation/c.py:2 imports datagen",
        "serving/b.py:1 imports training.jedi",
    ]
