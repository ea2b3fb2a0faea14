"""MkDocs hooks: one source for each text, nothing copied by hand (docs/notebooks is a link to
../notebooks, rendered by mkdocs-jupyter).

* ``<!-- readme: Heading -->`` in a page is replaced by that ``## Heading`` section of README.md
  (its ``###`` subsections included), so the guides never drift from the README.
* ``<!-- file: CONTRIBUTING.md -->`` is replaced by that file of the repository's root.
* ``<!-- cli-help -->`` is replaced by the ``--help`` of ``llmasos`` and of each subcommand, from
  the parser the command line itself uses.
* ``<!-- api: llmasos.export -->`` is replaced by a reference entry for every name in that
  module's ``__all__``, found where it really lives (public names load lazily, so the list and
  the places follow the code); a submodule in ``__all__`` links to its own page.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_MARK = re.compile(r"<!-- readme: (.+?) -->")
CLI_MARK = "<!-- cli-help -->"
FILE_MARK = re.compile(r"<!-- file: ([\w.-]+) -->")
API_MARK = re.compile(r"<!-- api: ([\w.]+) -->")
PAGES = {"llmasos.export": "export.md", "llmasos.zoo": "zoo.md", "llmasos.serve": "serve.md",
         "llmasos.errors": "errors.md", "llmasos.layers": "layers.md", "llmasos.ops": "ops.md"}


def readme_section(heading: str, depth: int = 0) -> str:
    """The body of README.md's ``## heading`` section, up to the next ``##`` heading, for a page
    ``depth`` folders below the site's root: README's links to ``notebooks/`` and ``docs/``
    (relative to the repository) are made relative to that page."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if match is None:
        raise ValueError(f"README.md has no section '## {heading}'")
    up = "../" * depth
    body = re.sub(r"\]\(notebooks/", f"]({up}notebooks/", match.group(1).strip())
    return re.sub(r"\]\(docs/", f"]({up}", body) + "\n"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((name, sub))
                found += [(f"{name} {inner}", parser) for inner, parser in _subcommands(sub)]
    return found


def cli_help() -> str:
    from llmasos.cli import build_parser

    parser = build_parser()
    parts = ["## llmasos\n", "```text\n" + parser.format_help() + "```\n"]
    for name, sub in _subcommands(parser):
        parts += [f"## llmasos {name}\n", "```text\n" + sub.format_help() + "```\n"]
    return "\n".join(parts)


def api_entries(module_name: str) -> str:
    """``:::`` entries (mkdocstrings) for the public names of ``module_name``."""
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    parts = []
    for name in module.__all__:
        if name.startswith("__"):
            continue
        value = getattr(module, name)
        if inspect.ismodule(value):
            page = PAGES.get(value.__name__)
            parts.append(f"## `{module_name}.{name}`\n\nThe [{value.__name__}]({page}) module.\n" if page else
                         f"## `{module_name}.{name}`\n\n::: {value.__name__}\n")
            continue
        if not callable(value):   # a constant (compress.NO_LABEL): its value, documented where it is defined
            parts.append(f"## `{module_name}.{name}`\n\n`{name} = {value!r}`\n")
            continue
        target = f"{value.__module__}.{value.__qualname__}"
        parts.append(f"## `{module_name}.{name}`\n\n::: {target}\n    options:\n      show_root_heading: false\n"
                     f"      heading_level: 3\n")
    return "\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    depth = page.file.src_uri.count("/")
    markdown = README_MARK.sub(lambda m: readme_section(m.group(1), depth), markdown)
    markdown = FILE_MARK.sub(lambda m: (ROOT / m.group(1)).read_text(encoding="utf-8"), markdown)
    markdown = API_MARK.sub(lambda m: api_entries(m.group(1)), markdown)
    if CLI_MARK in markdown:
        markdown = markdown.replace(CLI_MARK, cli_help())
    return markdown
