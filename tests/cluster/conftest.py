"""Fixtures of the cluster tests: the KubeRay validator from ../shared, a private local Ray head."""

from __future__ import annotations

import importlib.util

import pytest

from tests.cluster.local_head import LocalHead
from tests.conftest import SHARED

KUBERAY = SHARED / "kuberay"


@pytest.fixture(scope="session")
def kuberay_validate():
    """``../shared/kuberay/validate.py``: KubeRay v1.7.0 CRD schemas, checked offline."""
    assert (KUBERAY / "validate.py").is_file(), f"the KubeRay validator is missing at {KUBERAY}"
    spec = importlib.util.spec_from_file_location("kuberay_validate", KUBERAY / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ray_head():
    """A private `ray start --head` with token auth, stopped (only it) when the module is done."""
    head = LocalHead()
    try:
        yield head.start()
    finally:
        head.stop()
