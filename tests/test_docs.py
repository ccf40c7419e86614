"""The documentation renders as written: every `## ` line of a README is a heading under CommonMark."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from helpers import ROOT

READMES = ["README.md", "models/README.md", "benchmarks/README.md", "ios_harness/README.md"]


@pytest.mark.parametrize("name", READMES)
def test_every_heading_renders_as_a_heading(name):
    text = (ROOT / name).read_text()
    tokens = MarkdownIt("commonmark").parse(text)
    rendered = {
        tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"
    }
    written = {line[3:].strip() for line in text.splitlines() if line.startswith("## ")}
    assert written <= rendered, f"rendered as text or code, not as headings: {sorted(written - rendered)}"
    assert text.count("\n```") % 2 == 0, "an unclosed code fence"
