"""The shape of the code, checked: services and stores know nothing of HTTP.

Only ``syntera/api/`` and the domains' route modules (``routes.py``, ``*_routes.py``) may
import FastAPI, Starlette or ``syntera.api``; everything else (services, stores, workers,
the command line) is called by them and must work without them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import syntera

PACKAGE = Path(syntera.__file__).parent
HTTP_MODULES = ("fastapi", "starlette", "syntera.api")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _may_know_http(path: Path) -> bool:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] == "api" or relative.name.endswith("routes.py")


def test_only_the_http_layer_imports_fastapi_or_syntera_api() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in _imports(path) if name.startswith(HTTP_MODULES)
        )
        for path in sorted(PACKAGE.rglob("*.py"))
        if not _may_know_http(path)
    }
    offenders = {module: names for module, names in offenders.items() if names}
    assert offenders == {}, f"services and stores must not know HTTP: {offenders}"


def test_every_service_and_store_module_is_checked() -> None:
    """The rule above reaches the modules it is about (a moved tree would empty it)."""
    checked = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    for module in (
        "crm/service.py",
        "conversations/service.py",
        "conversations/store.py",
        "workflows/actions.py",
        "workflows/engine.py",
        "kb/processing.py",
        "workers.py",
        "cli/stack.py",
    ):
        assert module in checked
        assert not _may_know_http(PACKAGE / module)


def test_the_rule_catches_an_http_import(tmp_path: Path) -> None:
    module = tmp_path / "service.py"
    module.write_text("from fastapi import Query\nimport syntera.api.deps\n")
    assert _imports(module) >= {"fastapi", "syntera.api.deps"}
