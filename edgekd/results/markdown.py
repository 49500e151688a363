"""Rewriting one ``## Section`` of a Markdown page in place (benchmark scripts own one section each).

A section runs from its ``## Heading`` line to the next ``## `` heading (or the end of the page); every other
section is kept byte for byte. A page without the heading gets the section appended.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.atomic import atomic_write_text

__all__ = ["replace_section", "write_section"]


def replace_section(text: str, heading: str, body: str) -> str:
    """``text`` with the section under ``heading`` (e.g. ``"## Runtime"``) replaced by ``heading`` + ``body``."""
    section = heading + "\n\n" + body.strip("\n") + "\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == heading), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")


def write_section(path: str | Path, heading: str, body: str) -> Path:
    """Replace one section of the Markdown file at ``path`` (created if missing), atomically."""
    path = Path(path)
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    return atomic_write_text(path, replace_section(text, heading, body))
