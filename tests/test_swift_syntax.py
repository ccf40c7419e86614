"""Every Swift file of ios_harness parses with a Swift grammar (tree-sitter). The Swift compiler builds and
tests the platform-neutral SAMHarnessCore here (`make swift-test`); the Apple layer, the apps and the
device XCTest compile only with Apple's SDKs, so for them this parse is the check that runs here. A parse
proves syntax only: types, availability and API use need Xcode."""

from __future__ import annotations

import pytest
import tree_sitter_swift
from tree_sitter import Language, Parser

from helpers import ROOT

SWIFT_FILES = sorted(p for p in (ROOT / "ios_harness").rglob("*.swift") if ".build" not in p.parts)
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


APPLE_MODULES = ("CoreML", "CoreVideo", "CoreGraphics", "MetricKit", "Darwin", "UIKit", "AppKit", "os")


def test_the_core_needs_no_apple_framework_and_the_apple_layer_is_thin():
    """Issue 25: SAMHarnessCore (built and tested by the Swift compiler on Linux) imports no Apple framework
    outside `#if`; every file of the Apple layer SAMHarnessKit is wrapped whole in `#if canImport(...)`/`#if
    os(...)` or only re-exports the core, and names no type of the core's it would duplicate."""
    import re

    core = sorted((ROOT / "ios_harness/Sources/SAMHarnessCore").glob("*.swift"))
    apple = sorted((ROOT / "ios_harness/Sources/SAMHarnessKit").glob("*.swift"))
    tests = sorted((ROOT / "ios_harness/Tests/SAMHarnessCoreTests").glob("*.swift"))
    expected_core = {"BenchPlan", "BenchResult", "RunnerPolicy", "InputContract", "LatencyStats"}
    assert expected_core <= {p.stem for p in core}
    for path in core + tests:
        depth = 0
        for line in path.read_text().splitlines():
            depth += line.startswith("#if") - line.startswith("#endif")
            module = re.match(r"import (\w+)", line)
            if module and module.group(1) in APPLE_MODULES:
                assert depth > 0, f"{path.name}: unguarded import {module.group(1)}"
        for apple_type in ("DeviceInfo", "MemoryProbe", "ModelInputs", "ImageCanvas", "BenchmarkRunner"):
            assert f"{apple_type}." not in path.read_text(), f"{path.name} uses {apple_type}"
    for path in apple:
        lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("//")]
        if path.name == "SAMHarnessKit.swift":
            assert lines[0] == "@_exported import SAMHarnessCore"
            continue
        guarded = lines[0].startswith(("#if canImport(", "#if os(")) and lines[-1] == "#endif"
        imports_then_guard = path.name == "MetricKitMonitor.swift" and lines[-1] == "#endif"
        assert guarded or imports_then_guard, path.name
    apple_lines = sum(len(p.read_text().splitlines()) for p in apple)
    core_lines = sum(len(p.read_text().splitlines()) for p in core)
    assert apple_lines < core_lines, (apple_lines, core_lines)


def test_apple_only_review_items_stay_fixed():
    """Issue 25: lines only Apple's SDKs compile, held to the review's fixes: no `%d` (32-bit) for a Swift
    Int, no deprecated String(cString: [CChar]), no UIKit in the Demo that also builds for macOS, and the
    multifunction decoder guarded for macOS 15 as well as iOS 18."""
    for path in SWIFT_FILES:
        text = path.read_text()
        assert "%d" not in text, f"{path.name}: String(format:) with %d truncates a 64-bit Int"
        assert "String(cString:" not in text, f"{path.name}: deprecated String(cString: [CChar])"
    demo = (ROOT / "ios_harness/Demo/Segmenter.swift").read_text()
    assert "import UIKit" not in demo and "UIColor" not in demo
    assert "#available(iOS 18.0, macOS 15.0, *)" in demo and "#available(iOS 18.0, *)" not in demo
    bench_test = (ROOT / "ios_harness/BenchTests/DeviceBenchmarkTests.swift").read_text()
    assert "result.problems(against: plan)" in bench_test and "plan.runs" not in bench_test
