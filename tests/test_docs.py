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


def code_blocks(text: str, language: str):
    tokens = MarkdownIt("commonmark").parse(text)
    return [t.content for t in tokens if t.type == "fence" and t.info.strip() == language]


def test_the_swift_call_site_uses_only_public_harness_api():
    """Issue 12 item 17: each SAMHarnessKit name the README's Swift snippet calls is public in the package."""
    import re

    (snippet,) = code_blocks((ROOT / "README.md").read_text(), "swift")
    sources = "\n".join(p.read_text() for p in (ROOT / "ios_harness/Sources").rglob("*.swift"))
    for type_name, member in re.findall(
        r"\b(SAMInputContract|ImageCanvas|ModelInputs|MaskPostprocessing)\.(\w+)", snippet
    ):
        assert re.search(rf"public (static )?func {member}\b", sources), f"{type_name}.{member}"
    for name in ("Prompt(", "Click(", "contract.geometry(", "contract.tokens("):
        assert name in snippet
    assert "RepViTSAMEncoder(configuration:" in snippet and "RepViTSAMDecoder(configuration:" in snippet


def test_models_readme_lists_every_official_checkpoint():
    """Issue 12 item 17: where each registry model's official file comes from."""
    from samexport.registry import get_spec, list_models

    text = (ROOT / "models/README.md").read_text()
    for name in list_models():
        assert f"`{get_spec(name).checkpoint_file}`" in text, name


def test_readme_states_the_test_tiers_and_their_times():
    """Issue 12 item 18 / issue 11: the fast tier exists, and its measured time is recorded."""
    readme = (ROOT / "README.md").read_text()
    assert "make test-fast" in readme and "test-fast:" in (ROOT / "Makefile").read_text()
    timings = (ROOT / "benchmarks/results/linux-x86_64-2core/README.md").read_text()
    assert "## Test suite" in timings and "make test-fast" in timings
