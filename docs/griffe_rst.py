"""Griffe extension for the API reference: the docstrings are written for ``help()`` and doctest
(reST-flavoured plain text), the site renders Markdown. Doctest blocks (``>>>`` and their output)
and ``::`` literal blocks become fenced code, and ``:class:`x``` roles become code spans, so an
example's ``[0.5, 0.25]`` is never read as a Markdown link."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")


def to_markdown(text: str) -> str:
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
                block.append(lines[i][len(indent):])
                i += 1
            out += [indent + "```pycon", *(indent + b for b in block), indent + "```"]
            continue
        if line.rstrip().endswith("::") and not stripped.startswith(".."):
            head = line.rstrip()[:-1].rstrip()       # "Example::" -> "Example:", "::" alone -> ""
            out.append(head if head.strip() else "")
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            base = len(line) - len(stripped)
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > base):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                cut = min(len(b) - len(b.lstrip()) for b in block if b.strip())
                out += ["", " " * base + "```python", *(" " * base + b[cut:] for b in block), " " * base + "```", ""]
            continue
        out.append(ROLE.sub(r"`\1`", line))
        i += 1
    return "\n".join(out)


class ReSTToMarkdown(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
