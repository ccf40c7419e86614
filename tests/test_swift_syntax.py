"""Every Swift file of ios_harness parses with a Swift grammar (tree-sitter), since no Swift compiler runs
here (issue 13 item 15). A parse proves syntax only: types, availability and API use need Xcode."""

from __future__ import annotations

import pytest
import tree_sitter_swift
from tree_sitter import Language, Parser

from helpers import ROOT

SWIFT_FILES = sorted((ROOT / "ios_harness").rglob("*.swift"))
PARSER = Parser(Language(tree_sitter_swift.language()))


def syntax_errors(source: bytes):
    errors, stack = [], [PARSER.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            errors.append(f"line {node.start_point[0] + 1}: {node.text[:60]!r}")
        stack.extend(node.children)
    return errors


@pytest.mark.parametrize("path", SWIFT_FILES, ids=[p.name for p in SWIFT_FILES])
def test_swift_file_parses(path):
    assert not syntax_errors(path.read_bytes()), syntax_errors(path.read_bytes())


def test_the_parser_does_find_errors():
    assert syntax_errors(b"struct A { func f( { let x = }")
    assert not syntax_errors(b"struct A { func f() -> Int { let x = 1; return x } }")
    assert len(SWIFT_FILES) >= 20


APPLE_ONLY = {
    "BenchmarkRunner.swift",
    "ModelInputs.swift",
    "ImageCanvas.swift",
    "MemoryProbe.swift",
    "DeviceInfo.swift",
}
APPLE_MODULES = ("CoreML", "CoreVideo", "CoreGraphics", "MetricKit", "Darwin", "UIKit", "AppKit", "os")


def test_the_platform_neutral_core_needs_no_apple_framework():
    """Issue 13 item 16: outside the Apple-only files (wrapped whole in `#if canImport(...)`), SAMHarnessKit
    and its tests import Apple frameworks only behind `#if`, so `swift build && swift test` can run on
    Linux. (No Swift toolchain runs here: this checks the structure, not a compile.)"""
    import re

    sources = sorted((ROOT / "ios_harness/Sources/SAMHarnessKit").glob("*.swift"))
    tests = sorted((ROOT / "ios_harness/Tests/SAMHarnessKitTests").glob("*.swift"))
    names = {p.name for p in sources}
    neutral_names = set()
    for path in sources + tests:
        text = path.read_text()
        if path.name in APPLE_ONLY:
            lines = [line for line in text.splitlines() if line.strip() and not line.startswith("//")]
            assert lines[0].startswith("#if canImport(") and lines[-1] == "#endif", path.name
            continue
        depth = 0
        for line in text.splitlines():
            depth += line.startswith("#if") - line.startswith("#endif")
            module = re.match(r"import (\w+)", line)
            if module and module.group(1) in APPLE_MODULES:
                assert depth > 0, f"{path.name}: unguarded import {module.group(1)}"
        if path.parent.name == "SAMHarnessKit":
            neutral_names.add(path.stem)
    assert APPLE_ONLY <= names and {"InputContract", "LatencyStats", "MaskPostprocessing"} <= neutral_names
    for path in sources + tests:
        if path.name not in APPLE_ONLY:
            text = path.read_text()
            for apple_type in ("DeviceInfo", "MemoryProbe", "ModelInputs", "ImageCanvas", "BenchmarkRunner"):
                assert f"{apple_type}." not in text, f"{path.name} uses {apple_type}"
