"""Data flows one way: streams -> hvd_online -> console's glue. Read from the source files:
`console/` and `streams/` import nothing from `hvd_online`; `streams/` imports no
TensorFlow, Keras or Horovod."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported_packages(package: str) -> dict[str, set[str]]:
    """{module file: top-level packages it imports}, every import statement included
    (also those inside functions)."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        if "node_modules" in path.parts:
            continue
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    ("streams", {"hvd_online", "console", "tensorflow", "keras", "horovod"}),
    ("console", {"hvd_online", "horovod"}),
])
def test_no_package_imports_upstream(package, forbidden):
    modules = imported_packages(package)
    assert len(modules) >= 5, "the scan found the package's modules"
    # the scan sees real imports: every module here imports from its own package or below
    assert any("streams" in names for names in modules.values())
    offending = {m: sorted(names & forbidden) for m, names in modules.items() if names & forbidden}
    assert offending == {}
