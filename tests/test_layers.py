"""The layers import one way: api -> services -> crud -> models; infra is plumbing that
services (and the api edge) use; FastAPI lives only in app/api and app/main.py.

Read from the source with `ast`, so a wrong import fails here before anyone reads it.
"""

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"

# What each package may import from `app` (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "models": {"core"},
    "schemas": {"core", "models"},
    "crud": {"core", "models", "schemas"},
    "infra": {"core", "models"},
    "services": {"core", "models", "schemas", "crud", "infra"},
    "api": {"core", "models", "schemas", "services", "infra"},
    "worker": {"core", "models", "services", "infra", "wiring"},
    "wiring": {"core", "infra", "services"},
    "cli": {"core", "models", "schemas", "services"},
    "main": {"core", "api", "infra", "wiring"},
}
WEB_FRAMEWORKS = ("fastapi", "starlette")
WEB_ALLOWED = ("api", "main")


def _layer(path: Path) -> str:
    part = path.relative_to(APP).parts[0]
    return part.removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


MODULES = sorted(p for p in APP.rglob("*.py") if p.name != "__init__.py" or p.parent != APP)


def test_every_package_has_a_rule() -> None:
    assert {_layer(p) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(APP)))
def test_imports_follow_the_layers(path: Path) -> None:
    layer = _layer(path)
    wrong = []
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] == "app" and len(parts) > 1:
            target = parts[1]
            if target != layer and target not in ALLOWED[layer]:
                wrong.append(name)
        elif parts[0] in WEB_FRAMEWORKS and layer not in WEB_ALLOWED:
            wrong.append(name)
    assert not wrong, f"app/{path.relative_to(APP)} ({layer}) must not import {wrong}"


def test_the_check_can_fail(tmp_path: Path) -> None:
    """A crud module importing a service is caught (the test is not vacuous)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from app.services import booking\nimport fastapi\n")
    assert _imports(bad) == ["app.services", "fastapi"]
    assert "services" not in ALLOWED["crud"]
