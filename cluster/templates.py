"""Filling the YAML templates in ``manifests/`` with typed values.

Text templating of YAML (Helm-style) breaks on quoting and indentation; here a template is parsed
first and placeholders are replaced in the parsed tree: a value that is exactly ``${name}`` takes the
Python value as is (a number, a mapping, a list), ``${name}`` inside a longer string is replaced by
text, and a placeholder whose value is ``None`` removes its key (or list item), so optional parts need
no conditionals. A placeholder without a value, or a value no placeholder uses, is an error: a typo in
a template or in the renderer cannot silently produce a manifest with a hole in it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from core.paths import REPO_ROOT

TEMPLATES_DIR = REPO_ROOT / "manifests"
WHOLE = re.compile(r"^\$\{([a-z_][a-z0-9_]*)\}$")
PART = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")
_DROP = object()


class TemplateError(ValueError):
    """A template and its values do not match; ``str()`` names the template and the placeholder."""


def load(template: str) -> Any:
    path = TEMPLATES_DIR / f"{template}.yaml"
    if not path.is_file():
        raise TemplateError(f"no template {path}")
    return yaml.safe_load(path.read_text())


def fill(template: str, /, **values: Any) -> Any:
    """The template ``manifests/<template>.yaml`` with its placeholders replaced by ``values``."""
    return fill_tree(load(template), f"manifests/{template}.yaml", values)


def fill_tree(tree: Any, source: str, values: dict[str, Any]) -> Any:
    """Replace the placeholders of a parsed template; ``source`` names it in errors."""
    used: set[str] = set()

    def value_of(key: str) -> Any:
        if key not in values:
            raise TemplateError(f"{source}: no value for ${{{key}}}")
        used.add(key)
        return values[key]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                filled = walk(v)
                if filled is not _DROP:
                    out[k] = filled
            return out
        if isinstance(node, list):
            return [filled for filled in (walk(v) for v in node) if filled is not _DROP]
        if isinstance(node, str):
            whole = WHOLE.match(node)
            if whole:
                value = value_of(whole.group(1))
                return _DROP if value is None else value
            return PART.sub(lambda m: _text(source, m.group(1), value_of(m.group(1))), node)
        return node

    result = walk(tree)
    unused = sorted(set(values) - used)
    if unused:
        raise TemplateError(f"{source}: no placeholder for {', '.join(unused)}")
    return result


def _text(source: str, key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TemplateError(f"{source}: ${{{key}}} inside text needs a string or number")
    return str(value)
