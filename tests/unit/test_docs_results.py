"""Every figure table on the docs pages is rendered from a committed results file that says
which command made it, at which commit, from a clean tree (scripts/docs_reference.py)."""

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from docs_reference import RESULTS_MARK, render_results  # noqa: E402


def marks() -> list[tuple[str, str]]:
    return [(page.name, name) for page in sorted((REPO / "docs").glob("*.md"))
            for name in RESULTS_MARK.findall(page.read_text())]


def in_history(commit: str) -> bool:
    """The commit is HEAD or one of its ancestors (not one rewritten away)."""
    done = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=REPO,
                          capture_output=True)
    return done.returncode == 0


def test_every_results_mark_has_a_source_with_command_and_clean_commit():
    found = marks()
    assert ("guarantees.md", "failover") in found
    for page, name in found:
        result = json.loads((REPO / "benchmarks" / "results" / f"{name}.json").read_text())
        assert re.fullmatch(r"[0-9a-f]{40}", result["commit"]), (page, name, result["commit"])
        assert in_history(result["commit"]), (page, name, result["commit"], "not in git log")
        assert result["command"].startswith("python -m benchmarks."), (page, name)
        assert result["table"].startswith("|"), (page, name)


def test_a_mark_renders_the_table_command_and_commit():
    result = json.loads((REPO / "benchmarks" / "results" / "failover.json").read_text())
    text = render_results("before\n<!-- results: failover -->\nafter")
    assert result["table"] in text and result["command"] in text
    assert result["commit"][:12] in text and "<!--" not in text
