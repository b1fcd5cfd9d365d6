"""What ships: the server and client packages import only the standard library, our own
packages and the runtime dependencies (with theirs), never a development-only library; test
helpers live under tests/."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = {"server", "client", "croupier"}


def _runtime_closure() -> set[str]:
    """Normalized names of croupier's runtime dependencies (no extras) and theirs, as
    installed."""

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    seen: set[str] = set()
    todo = ["croupier"]
    while todo:
        name = todo.pop()
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            dep = norm(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level module imported -> files importing it, for every module under `package`."""
    out: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                out.setdefault(n.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return out


def test_server_and_client_import_no_development_only_library() -> None:
    runtime = _runtime_closure()
    dists = metadata.packages_distributions()
    offenders = {}
    for package in ("server", "client"):
        for module, files in _imports(package).items():
            if module in OURS or module in sys.stdlib_module_names or module == "__future__":
                continue
            owners = {re.sub(r"[-_.]+", "-", d).lower() for d in dists.get(module, [])}
            if not owners & runtime:
                offenders[module] = sorted(files)
    assert offenders == {}, f"not a runtime dependency: {offenders}"


def test_test_helpers_and_development_certificates_are_not_in_the_server_package() -> None:
    assert not (ROOT / "server" / "store" / "scratch.py").exists()
    assert not (ROOT / "server" / "certs.py").exists()
    assert (ROOT / "tests" / "scratch.py").exists()
    assert (ROOT / "tests" / "certs.py").exists()
