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


def test_only_streams_pulsar_talks_to_the_broker():
    modules = imported_packages("streams")
    assert any("pulsar" in names for m, names in modules.items() if "/pulsar/" in m)
    assert {m for m, names in modules.items() if "pulsar" in names and "/pulsar/" not in m} == set()
    # nor through a neighbour: the broker-free modules import nothing from streams/pulsar/
    reaching = set()
    for path in (REPO / "streams").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "streams.pulsar"):
                reaching.add(path.name)
    assert reaching == set()


#: hvd_online's rooms, lowest first: each imports only from its own room or those before it
ROOMS = ("errors", "config", "model", "sync", "state", "inputs", "drift", "training",
         "observers", "commands", "cli")


def room_imports() -> dict[str, set[str]]:
    """{module file: hvd_online rooms it imports}, every import statement included."""
    found = {}
    for path in sorted((REPO / "hvd_online").rglob("*.py")):
        rooms = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] if node.module != "hvd_online" else [
                    f"hvd_online.{alias.name}" for alias in node.names]
            rooms.update(n.split(".")[1] for n in names if n.startswith("hvd_online."))
        found[str(path.relative_to(REPO / "hvd_online"))] = rooms
    return found


def room_of(module: str) -> str:
    return module.split("/")[0].removesuffix(".py")


#: old import paths kept for a release, each only re-exporting from its room, with a warning
DEPRECATED = {"template.py"}


def test_rooms_import_only_downward():
    modules = {m: rooms for m, rooms in room_imports().items()
               if m != "__init__.py" and m not in DEPRECATED}
    assert {room_of(m) for m in modules} == set(ROOMS), "every room is in the order"
    # the scan sees real imports: the CLI reaches the config and the commands
    assert {"config", "errors"} <= modules["cli.py"]
    upward = {m: sorted(r for r in rooms if ROOMS.index(r) > ROOMS.index(room_of(m)))
              for m, rooms in modules.items()}
    assert {m: r for m, r in upward.items() if r} == {}


def test_no_room_is_a_flat_crowd():
    for package in ("hvd_online", "streams", "console"):
        subpackages = (p.parent for p in (REPO / package).rglob("*/__init__.py"))
        for folder in [REPO / package, *subpackages]:
            if "node_modules" in folder.parts:
                continue
            modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
            assert len(modules) <= 12, (str(folder.relative_to(REPO)), len(modules))


def test_a_deprecated_path_only_warns_and_re_exports():
    for module in DEPRECATED:
        tree = ast.parse((REPO / "hvd_online" / module).read_text())
        kinds = {type(node).__name__ for node in tree.body}
        assert kinds <= {"Expr", "Import", "ImportFrom", "Assign"}, (module, kinds)
        assert "DeprecationWarning" in ast.unparse(tree)
