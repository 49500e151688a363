"""Benchmark scripts rewrite only their own section of docs/benchmarks.md."""

from __future__ import annotations

from edgekd.results.markdown import replace_section, write_section

PAGE = ("# Benchmarks\n\nintro\n\n## Training\n\nold training\n\n## Runtime\n\nold runtime\n| a |\n\n"
        "## Device\n\ndevice text\n")


def test_replaces_a_middle_section_and_keeps_the_others():
    text = replace_section(PAGE, "## Runtime", "new runtime\n")
    assert "old runtime" not in text and "new runtime" in text
    assert text.startswith("# Benchmarks\n\nintro\n\n## Training\n\nold training\n\n## Runtime\n")
    assert text.endswith("## Device\n\ndevice text\n")


def test_replaces_the_last_section_and_appends_a_missing_one():
    text = replace_section(PAGE, "## Device", "new device")
    assert text.endswith("## Device\n\nnew device\n") and "old runtime" in text
    text = replace_section(PAGE, "## Compression", "table")
    assert text.endswith("device text\n\n## Compression\n\ntable\n")


def test_heading_must_match_a_whole_line(tmp_path):
    page = "## Runtime notes\n\nkeep\n\n## Runtime\n\nold\n"
    path = tmp_path / "b.md"
    path.write_text(page)
    write_section(path, "## Runtime", "new")
    assert path.read_text() == "## Runtime notes\n\nkeep\n\n## Runtime\n\nnew\n"
    assert replace_section(path.read_text(), "## Runtime", "new") == path.read_text()  # idempotent
