"""The shape of the code, checked: every import runs down the layer order.

From the bottom: the base (settings, errors, metrics); who is asking (``tenancy``); the
stores' connections and SQL (``db``); the shared infrastructure (cache, rate limits, the
embedded servers, the worker runtime); the unit of work; the domains' building blocks
(``kit``); the domains' services, stores and workers. Beside the domains and below the routes
stands the HTTP layer (``api``), which knows no domain; above both, the domains' route
modules (``routes.py``, ``*_routes.py``); then the application (``app``), and the command
line on top.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions. There
is no allow-list: a module that needs something above it is in the wrong layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import syntera

PACKAGE = Path(syntera.__file__).parent

BASE = frozenset({"syntera", "syntera.errors", "syntera.config", "syntera.metrics"})
INFRASTRUCTURE = frozenset(
    {"syntera.cache", "syntera.ratelimit", "syntera.embedded", "syntera.workers"}
)
DOMAINS = frozenset({
    "agents", "analytics", "auth", "calls", "companies", "console", "conversations", "crm",
    "events", "insights", "kb", "llm", "notifications", "ops", "purges", "saved_replies",
    "widget", "workflows",
})  # fmt: skip

# The chain from the bottom: each layer may import those before it (and itself).
CHAIN = ("base", "tenancy", "db", "infrastructure", "unit_of_work", "kit", "domains")
MAY_IMPORT: dict[str, frozenset[str]] = {
    layer: frozenset(CHAIN[:index]) for index, layer in enumerate(CHAIN)
}
# The HTTP layer stands beside the domains and knows none of them; the routes join both.
MAY_IMPORT["api"] = frozenset(CHAIN[: CHAIN.index("kit") + 1])
# The data API (/rest/v1) is HTTP too, over the HTTP layer, and knows no domain either.
MAY_IMPORT["rest"] = MAY_IMPORT["api"] | {"api"}
MAY_IMPORT["routes"] = frozenset({*CHAIN[: CHAIN.index("domains") + 1], "api"})
MAY_IMPORT["app"] = frozenset({*CHAIN, "api", "rest", "routes"})
MAY_IMPORT["cli"] = MAY_IMPORT["app"] | {"app"}
HTTP_LIBRARIES = ("fastapi", "starlette")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """The layer of a module of the package (``syntera.kb.routes`` is a route module)."""
    if module in BASE:
        return "base"
    if module in INFRASTRUCTURE:
        return "infrastructure"
    parts = module.split(".")
    top = parts[1]
    if top in ("tenancy", "db", "unit_of_work", "kit", "api", "rest", "app", "cli"):
        return top
    if top == "__main__":
        return "cli"
    if top in DOMAINS:
        last = parts[-1]
        return "routes" if last == "routes" or last.endswith("_routes") else "domains"
    raise AssertionError(f"{module} is in no layer: add it to the order in this test")


def imported_modules(path: Path, module: str | None = None) -> set[str]:
    """Every module of the package that ``path`` (the module ``module``) imports, wherever
    the import stands (``from syntera.kb import routes`` names ``syntera.kb.routes``)."""
    package = module or module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(base)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if _is_module(candidate):
                    names.add(candidate)
    return {name for name in names if name == "syntera" or name.startswith("syntera.")}


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PACKAGE / relative).with_suffix(".py").is_file() or (
        PACKAGE / relative / "__init__.py"
    ).is_file()


def http_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] in HTTP_LIBRARIES}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_import_runs_down_the_layer_order() -> None:
    upward: dict[str, list[str]] = {}
    for path in MODULES:
        module = module_name(path)
        layer = layer_of(module)
        allowed = MAY_IMPORT[layer] | {layer}
        wrong = sorted(
            f"{name} ({layer_of(name)})"
            for name in imported_modules(path)
            if layer_of(name) not in allowed
        )
        if wrong:
            upward[f"{module} ({layer})"] = wrong
    assert upward == {}, f"imports that run upward or sideways: {upward}"


def test_only_the_http_layer_and_the_routes_know_http() -> None:
    """Services, stores, workers and the command line work without FastAPI."""
    knowing = {
        module_name(path): sorted(http_imports(path))
        for path in MODULES
        if layer_of(module_name(path)) not in ("api", "rest", "routes", "app")
    }
    assert {module: names for module, names in knowing.items() if names} == {}


def test_only_the_unit_of_work_opens_a_transaction() -> None:
    """``open_unit_of_work`` is the one way to open a tenant transaction: nothing else in
    the package calls the connection layer's openers, so after-commit work and undo can
    never be forgotten."""
    openers = {"open_transaction", "transaction_as", "begin_as"}
    callers = {
        module_name(path)
        for path in MODULES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Name | ast.Attribute)
        and (node.id if isinstance(node, ast.Name) else node.attr) in openers
    }
    assert callers <= {"syntera.db.postgres", "syntera.unit_of_work"}, callers


def test_the_order_reaches_every_layer() -> None:
    """A moved tree would leave layers empty, and the rules above about nothing."""
    seen = {layer_of(module_name(path)) for path in MODULES}
    assert seen == set(MAY_IMPORT)


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from syntera.api import deps\n", {"syntera.api", "syntera.api.deps"}),
        ("import typing\nif typing.TYPE_CHECKING:\n    from syntera.app import x\n",
         {"syntera.app"}),
        ("def f():\n    from syntera.cli import stack\n", {"syntera.cli", "syntera.cli.stack"}),
    ],
)  # fmt: skip
def test_the_rule_sees_every_kind_of_import(tmp_path: Path, source: str, found: set[str]) -> None:
    module = tmp_path / "probe.py"
    module.write_text(source)
    assert imported_modules(module, "syntera.kit.probe") == found
    assert {layer_of(name) for name in found} - MAY_IMPORT["kit"]
