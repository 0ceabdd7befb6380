"""Fine-tuning methods: what each trains (its plan) and what it does when a subject it made is drawn.

``registry`` is the one dict of name → ``Method``; importing this package registers the methods of
the code base, one module each (``BUILTIN``, in the order reports list them). A new method is one
more module calling ``register``: added to ``BUILTIN``, or named in ``finetune.plugins`` when it lives
outside the code base. Multi-concept scenes are trained by their own recipe
(``training.multiconcept``); the method is registered so that the subjects it publishes name a
known method.
"""

import importlib

from core.methods.registry import METHODS, Method, get, method_plan, names, parse_methods, register

BUILTIN = ("dreambooth", "textual_inversion", "two_stage", "core_method")
for _module in BUILTIN:
    importlib.import_module(f"core.methods.{_module}")
register(Method("multiconcept", "concept-driven EM", selectable=False))
BUILTIN_NAMES = tuple(names())
"""The code base's own selectable methods: defaults that list "every method" list these, so a default
does not depend on which plugins this process happened to import (a Ray worker that validates the
same config may not have them)."""

__all__ = ["BUILTIN_NAMES", "METHODS", "Method", "get", "method_plan", "names", "parse_methods", "register"]
