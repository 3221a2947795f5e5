"""The docs site's reference pages, generated from the code's own declarations so they cannot
drift: config keys (hvd_online/config/sections.py), the CLI (its parser), the /metrics
families (the registries), the metrics.jsonl rows (StepReport) and the per-rank summary; and
the results tables, rendered where a page says `<!-- results: NAME -->` from
benchmarks/results/NAME.json with the command and commit that made it.

mkdocs runs this as a hook (mkdocs.yml `hooks:`) before every build and `mkdocs serve`; the
pages go to docs/reference/ (not committed). Also: `python scripts/docs_reference.py DIR`.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def field_comments(path: Path) -> dict[tuple[str, str], str]:
    """{(class, field): its `#:` comment lines, joined} for the dataclasses in `path`."""
    lines = path.read_text().splitlines()
    out = {}
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                comment, row = [], item.lineno - 2
                while row >= 0 and lines[row].strip().startswith("#:"):
                    comment.insert(0, lines[row].strip()[2:].strip())
                    row -= 1
                out[(node.name, item.target.id)] = " ".join(comment)
    return out


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_page() -> str:
    from hvd_online.config import sections
    from hvd_online.config.sections import Config

    comments = field_comments(Path(sections.__file__))
    out = ["# Configuration keys", "",
           "Every key of the TOML config, by section: type, default, allowed range, meaning "
           "(generated from `hvd_online/config/sections.py`). Any key can be set on the "
           "command line with `--set SECTION.KEY=VALUE` (a TOML value).", ""]
    for section in dataclasses.fields(Config):
        cls = section.default_factory  # type: ignore[misc]
        out += [f"## `[{section.name}]`", ""]
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
            out += [" ".join(cls.__doc__.split()), ""]
        out += ["| key | type | default | range | meaning |", "|---|---|---|---|---|"]
        instance = cls()
        for f in dataclasses.fields(cls):
            limits = f.metadata.get("range", {})
            shown = ", ".join(f"{op} {v}" for op, v in limits.items()) or ""
            default = getattr(instance, f.name)
            out.append(f"| `{f.name}` | `{cell(str(f.type))}` | `{cell(repr(default))}` | "
                       f"{shown} | {cell(comments.get((cls.__name__, f.name), ''))} |")
        out.append("")
    return "\n".join(out)


def cli_page() -> str:
    import argparse

    from hvd_online.cli import build_parser

    parser = build_parser()
    out = ["# Command line", "", "`hvd-online --help` and each command's `--help`, as the "
           "parser prints them (generated from `hvd_online/cli.py`).", "", "```text",
           parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [f"## `hvd-online {name}`", "", "```text", sub.format_help().rstrip(),
                        "```", ""]
    return "\n".join(out)


def families(registry: Any) -> list[tuple[str, str, str]]:
    return [(m.name, m.type, m.documentation) for m in registry.collect()]


def metrics_page() -> str:
    from console.metrics import RunMetrics
    from console.replica import ServingStatus

    out = ["# Prometheus metrics", "",
           "`GET /metrics` on the console (rank 0's run figures) and on every serving replica "
           "(generated from their registries; labelled families appear once a report carries "
           "them).", ""]
    for title, registry in (("Console", RunMetrics(serving_version=lambda: 0).registry),
                            ("Serving replica", ServingStatus().registry)):
        out += [f"## {title}", "", "| name | type | help |", "|---|---|---|"]
        out += [f"| `{name}` | {kind} | {cell(doc)} |" for name, kind, doc in
                families(registry)]
        out.append("")
    return "\n".join(out)


def files_page() -> str:
    from hvd_online.commands import train
    from hvd_online.training import reports
    from hvd_online.training.reports import StepReport

    comments = field_comments(Path(reports.__file__))
    out = ["# Run files", "",
           "## `RUN_DIR/metrics.jsonl`", "",
           "Rank 0 writes one JSON object a line, a step report (`StepReport.as_json()`, "
           "generated from `hvd_online/training/reports.py`):", "",
           "| field | type | meaning |", "|---|---|---|"]
    out += [f"| `{f.name}` | `{cell(str(f.type))}` | "
            f"{cell(comments.get(('StepReport', f.name), ''))} |"
            for f in dataclasses.fields(StepReport)]
    tree = ast.parse(Path(train.__file__).read_text())
    keys = next(
        [k.value for k in node.body[0].value.keys if isinstance(k, ast.Constant)]  # type: ignore[attr-defined]
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "rank_summary")
    out += ["", "## `RUN_DIR/summary-rank-R.json`", "",
            "Each rank writes its result when it ends (`rank_summary` in "
            "`hvd_online/commands/train.py`): " + ", ".join(f"`{k}`" for k in keys) + ".",
            "", "## Other files", "",
            "`checkpoints/ckpt-STEP/` (weights, optimizer, run state, manifest), "
            "`serving/NAME/VERSION/` (TF-Serving SavedModels), `console.url`, "
            "`console-grpc.txt`, `replicas/replica-I.json` (a replica's REST and gRPC "
            "addresses), `tensorboard/`, `broker/` (the embedded broker's data), "
            "`config-error.txt`.", ""]
    return "\n".join(out)


PAGES = {"config.md": config_page, "cli.md": cli_page, "metrics.md": metrics_page,
         "files.md": files_page}


def write_reference(docs: Path) -> None:
    target = docs / "reference"
    target.mkdir(parents=True, exist_ok=True)
    for name, page in PAGES.items():
        text = page()
        path = target / name
        if not path.exists() or path.read_text() != text:  # `mkdocs serve` would loop
            path.write_text(text)
    results = docs / "results"
    results.mkdir(exist_ok=True)
    for picture in (REPO / "benchmarks" / "results").glob("*.png"):
        copy = results / picture.name
        if not copy.exists() or copy.stat().st_mtime < picture.stat().st_mtime:
            shutil.copy2(picture, copy)


RESULTS_MARK = re.compile(r"<!-- results: ([\w-]+) -->")


def results_block(name: str) -> str:
    """A committed result's table, with the command and the commit it came from: figures in
    the docs are rendered from benchmarks/results/NAME.json, never typed in."""
    path = REPO / "benchmarks" / "results" / f"{name}.json"
    result = json.loads(path.read_text())
    return (f"{result['table']}\n\n*From `benchmarks/results/{name}.json`: "
            f"`{result['command']}` at commit `{result['commit'][:12]}` on "
            f"{result['cores']} cores, {result['written_at']}.*")


def render_results(markdown: str) -> str:
    return RESULTS_MARK.sub(lambda found: results_block(found.group(1)), markdown)


def on_pre_build(config: Any) -> None:  # mkdocs hooks
    write_reference(Path(config["docs_dir"]))
    shutil.copy2(REPO / "CHANGELOG.md", Path(config["docs_dir"]) / "changelog.md")


def on_page_markdown(markdown: str, **_: Any) -> str:
    return render_results(markdown)


if __name__ == "__main__":
    write_reference(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs")
