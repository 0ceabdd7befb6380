"""The placeholder filler behind `s3jedi manifests render`: typed values, dropped keys, strict matching."""

from __future__ import annotations

import pytest
import yaml

from cluster.templates import TEMPLATES_DIR, TemplateError, fill_tree

TREE = yaml.safe_load(
    """
name: ${name}
port: ${port}
spec: ${spec}
optional: ${maybe}
url: http://${host}:${port}/x
items: [a, "${maybe}", "${spec}"]
"""
)


def test_whole_values_keep_their_type_and_text_is_substituted():
    out = fill_tree(TREE, "t", {"name": "n", "port": 8265, "spec": {"k": [1]}, "maybe": None, "host": "h"})
    assert out == {"name": "n", "port": 8265, "spec": {"k": [1]}, "url": "http://h:8265/x", "items": ["a", {"k": [1]}]}


def test_a_missing_value_names_the_template_and_placeholder():
    with pytest.raises(TemplateError, match=r"^t: no value for \$\{host\}$"):
        fill_tree(TREE, "t", {"name": "n", "port": 1, "spec": {}, "maybe": None})


def test_a_value_no_template_uses_is_an_error():
    with pytest.raises(TemplateError, match="no placeholder for nmae"):
        fill_tree(TREE, "t", {"name": "n", "port": 1, "spec": {}, "maybe": None, "host": "h", "nmae": "x"})


def test_structures_cannot_be_pasted_into_text():
    with pytest.raises(TemplateError, match=r"\$\{host\} inside text needs a string or number"):
        fill_tree(TREE, "t", {"name": "n", "port": 1, "spec": {}, "maybe": None, "host": {"a": 1}})


def test_every_template_is_plain_yaml():
    templates = sorted(TEMPLATES_DIR.glob("*.yaml"))
    assert len(templates) >= 10
    for path in templates:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path
