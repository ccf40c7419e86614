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
