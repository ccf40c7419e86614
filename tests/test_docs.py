"""The documentation renders as written (every `## ` line of a README or docs page is a heading under
CommonMark), its code runs, its synopsis and links are whole, and README stays a page a newcomer reads."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from helpers import ROOT

DOCS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
READMES = ["README.md", "models/README.md", "benchmarks/README.md", "ios_harness/README.md", *DOCS]
README_MAX_BYTES = 16 * 1024


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

    (snippet,) = code_blocks((ROOT / "docs/exports.md").read_text(), "swift")
    (coreai,) = code_blocks((ROOT / "docs/targets.md").read_text(), "swift")
    sources = "\n".join(p.read_text() for p in (ROOT / "ios_harness/Sources").rglob("*.swift"))
    for type_name, member in re.findall(
        r"\b(SAMInputContract|ImageCanvas|ModelInputs|MaskPostprocessing)\.(\w+)", snippet
    ):
        assert re.search(rf"public (static )?func {member}\b", sources), f"{type_name}.{member}"
    for name in ("Prompt(", "Click(", "contract.geometry(", "contract.tokens("):
        assert name in snippet
    assert "RepViTSAMEncoder(configuration:" in snippet and "RepViTSAMDecoder(configuration:" in snippet
    # the Core AI call site names the bundle and assets `convert --target coreai` writes, and its inputs
    for name in (
        'RepViTSAM", withExtension: "coreai"',
        "RepViTSAMEncoder.aimodel",
        'loadFunction(named: "main")',
    ):
        assert name in coreai, name
    assert all(
        f'"{n}"' in coreai for n in ("image", "imageEmbeddings", "points", "maskInput", "hasMaskInput")
    )


def test_the_tracking_swift_snippet_uses_only_public_harness_api():
    """docs/tracking.md's Swift: each tracker name it calls is public in the package."""
    import re

    (snippet,) = code_blocks((ROOT / "docs/tracking.md").read_text(), "swift")
    sources = "\n".join(p.read_text() for p in (ROOT / "ios_harness/Sources").rglob("*.swift"))
    for type_name in ("CoreMLTrackerParts", "MemoryTracker"):
        assert type_name in snippet and re.search(rf"public (final )?class {type_name}\b", sources), type_name
    for member in ("bundled", "trackerConfig", "addPrompt", "propagate"):
        assert re.search(rf"\.{member}\b", snippet) and re.search(
            rf"public (static )?func {member}\b", sources
        ), member
    assert "public var packedPrompts" in sources and "public let videoLogits" in sources


def test_models_readme_lists_every_official_checkpoint():
    """Issue 12 item 17: where each registry model's official file comes from."""
    from samexport.families.registry import get_spec, list_models

    text = (ROOT / "models/README.md").read_text()
    for name in list_models():
        assert f"`{get_spec(name).checkpoint_file}`" in text, name


def test_readme_states_the_test_tiers_and_their_times():
    """Issue 12 item 18 / issue 11: the fast tier exists, and its measured time is recorded."""
    readme = (ROOT / "README.md").read_text()
    assert "make test-fast" in readme and "test-fast:" in (ROOT / "Makefile").read_text()
    timings = (ROOT / "benchmarks/results/linux-x86_64-2core/README.md").read_text()
    assert "## Test suite" in timings and "make test-fast" in timings


def python_blocks():
    """(page, block) of every Python block of README and the docs pages, in page order."""
    return [
        (name, b) for name in ["README.md", *DOCS] for b in code_blocks((ROOT / name).read_text(), "python")
    ]


@pytest.fixture()
def readme_folder(tmp_path, monkeypatch, exports, fixture_checkpoint):
    """A folder laid out as the README's Python blocks expect: photo.jpg (a 640x480 photo), the official
    checkpoint names holding the fixture weights, and the session's exports under models/."""
    from PIL import Image

    from helpers import write_rapsam_fixture_files
    from samexport.samples import validation_image

    out, _ = exports
    models = tmp_path / "models"
    models.mkdir()
    for path in out.iterdir():
        (models / path.name).symlink_to(path)
    (models / "repvit_sam.pt").symlink_to(fixture_checkpoint("repvit"))
    checkpoint, classifier = write_rapsam_fixture_files(tmp_path)
    (models / "rapsam_r50_12e.pth").symlink_to(checkpoint)
    (models / "cls.pth").symlink_to(classifier)
    import torch

    from samexport.checkpoint import random_fill
    from samexport.families.rapsam.family import fill_classifier

    torch.save(fill_classifier(random_fill, video=True), models / "ytvis.pth")
    Image.fromarray(validation_image()).save(tmp_path / "photo.jpg", quality=95)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_python_block_of_the_docs_runs(readme_folder):
    """Issue 26 item 4: each Python block of README.md and docs/ runs as written, on the fixture weights
    (everything mode on a 2x2 grid instead of the default 32x32, the one change: 1024 decodes on torch take
    minutes)."""
    blocks = python_blocks()
    assert len(blocks) >= 3
    for number, (page, block) in enumerate(blocks):
        source = block.replace("points_per_side=32", "points_per_side=2")
        namespace: dict = {}
        try:
            exec(compile(source, f"{page} python block {number}", "exec"), namespace)
        except Exception as e:  # the block and the line that failed, in the assertion
            raise AssertionError(
                f"{page} python block {number} fails: {type(e).__name__}: {e}\n{block}"
            ) from e


def test_readme_is_a_page_a_newcomer_reads_and_links_every_docs_page():
    """Issue 32 item 7: README.md at most 16 KB, the reference in docs/, every page linked from README."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= README_MAX_BYTES, len(readme.encode())
    for page in DOCS:
        assert f"]({page})" in readme, page


@pytest.mark.parametrize("name", READMES)
def test_relative_links_point_at_files_that_exist(name):
    import re

    text = (ROOT / name).read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert ((ROOT / name).parent / target).exists(), f"{name} links {target}"


def test_the_command_synopsis_lists_every_option():
    """Issue 26 item 5: README's synopsis names every option of every command (click is the source)."""
    from samexport.cli import cli

    (synopsis,) = [
        b for b in code_blocks((ROOT / "README.md").read_text(), "") if b.startswith("samexport list")
    ]
    sections = {}
    for line in synopsis.splitlines():
        if line.startswith("samexport "):
            current = line.split()[1]
        sections[current] = sections.get(current, "") + line + "\n"
    assert set(sections) == set(cli.commands), sorted(set(cli.commands) ^ set(sections))
    missing = [
        f"{name} {flag}"
        for name, command in cli.commands.items()
        for param in command.params
        if param.param_type_name == "option" and "--help" not in param.opts
        for flag in [max(param.opts, key=len)]
        if flag not in sections[name]
    ]
    assert not missing, missing


def test_the_top_level_help_names_every_family(capsys):
    """Issue 26 item 5: `samexport --help` named four of the five families."""
    from samexport.cli import run
    from samexport.families import FAMILIES
    from samexport.families.registry import get_spec, list_models

    assert run(["--help"]) == 0
    import re

    text = " ".join(re.sub(r"-\n\s+", "-", capsys.readouterr().out).split())  # click wraps at hyphens
    titles = {get_spec(name).family.name: get_spec(name).title for name in list_models()}
    assert set(titles) <= set(FAMILIES)
    for title in ("RepViT-SAM", "MobileSAM", "EfficientSAM", "RAP-SAM", "SAM"):
        assert title in text, title
