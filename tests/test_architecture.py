"""The structure the code keeps: layers that point one way, no import cycles, registries that refuse
duplicates, and families as packages (a new family is its own package under families/ plus its name in
FAMILY_PACKAGES)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, swift_source

PACKAGE = ROOT / "samexport"

# Bottom to top: a module may import its own layer and the layers below it, never one above.
LAYERS = [
    {
        "samexport.errors",
        "samexport.version",
        "samexport.console",
        "samexport.fsutil",
        "samexport.platforms",
        "samexport.provenance",
        "samexport.coreml_package",
        "samexport.coreml_placement",
    },
    {
        "samexport.parts",
        "samexport.runtime",
        "samexport.sequence",
        "samexport.samples",
        "samexport.mileval",
        "samexport.modeling",
        "samexport.amg",
        "samexport.everything",
        "samexport.overlay",
        "samexport.clips",
        "samexport.track_prompts",
    },
    {"samexport.families"},
    {
        "samexport.checkpoint",
        "samexport.reparam",
        "samexport.zoo",
        "samexport.info",
        "samexport.predictor",
        "samexport.mask_generator",
    },
    {"samexport.export"},
    {"samexport.bench", "samexport.segment", "samexport.video_predictor"},
    {"samexport.cli", "samexport"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> int:
    for rank, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members if m != "samexport"):
            return rank
    if module == "samexport":
        return len(LAYERS) - 1
    raise AssertionError(f"{module} is in no layer; add it to LAYERS in {__file__}")


def imports_of(module: str):
    """samexport modules `module` imports (anywhere in the file, TYPE_CHECKING blocks included: a cycle
    through a type annotation is a cycle of the design)."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("samexport")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("samexport"):
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source)
    return found - {module}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_upward_imports():
    upward = [
        f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
        for m, deps in GRAPH.items()
        for d in deps
        if layer_of(d) > layer_of(m)
    ]
    assert not upward, "\n".join(upward)


def test_only_the_cli_imports_the_package_facade():
    users = sorted(m for m, deps in GRAPH.items() if "samexport" in deps and m != "samexport")
    assert users in ([], ["samexport.cli"]), users


def test_no_import_cycles():
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(GRAPH.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(cycles)


def package_of(module: str) -> str:
    """samexport.export.convert -> samexport.export; a top-level module is its own package."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_package_level_mutual_dependencies():
    """Two packages (or top-level modules) never import each other, not even through different modules."""
    edges = {(package_of(m), package_of(d)) for m, deps in GRAPH.items() for d in deps}
    mutual = sorted(f"{a} <-> {b}" for a, b in edges if a < b and (b, a) in edges and a != b)
    assert not mutual, mutual


def test_mileval_is_standalone():
    assert not [
        d
        for m, deps in GRAPH.items()
        if m.startswith("samexport.mileval")
        for d in deps
        if d.startswith("samexport.export")
    ]


def test_help_imports_neither_torch_nor_onnx():
    code = (
        "import sys; from samexport.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'onnx', 'onnxruntime', 'coremltools', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_list_counts_parameters_without_flop_counting(monkeypatch):
    from click.testing import CliRunner

    import samexport.info
    from samexport.cli import cli

    def no_flops(fn):
        raise AssertionError("samexport list must not count FLOPs")

    monkeypatch.setattr(samexport.info, "_gmacs", no_flops)
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0, result.output
    assert "27.2M" in result.output and "641.1M" in result.output


# -- registries -------------------------------------------------------------------------------------
def test_registries_refuse_duplicates():
    from samexport.bench.backends import CoreMLBackend, register_backend
    from samexport.export.onnx_target import OnnxTarget
    from samexport.export.target import register_target, targets
    from samexport.families import register_family
    from samexport.families.registry import get_spec, register_model
    from samexport.families.sam import SAM
    from samexport.mileval.registry import DuplicateOpError, op

    targets()
    with pytest.raises(DuplicateOpError, match="'add' is registered twice"):
        op("add")(lambda x, y: x + y)
    with pytest.raises(ValueError, match="registered twice"):
        register_family(SAM)
    with pytest.raises(ValueError, match="registered twice"):
        register_model(get_spec("repvit"))
    with pytest.raises(ValueError, match="registered twice"):
        register_target(OnnxTarget)
    with pytest.raises(ValueError, match="registered twice"):
        register_backend(CoreMLBackend())


def test_unknown_family_is_an_error():
    from samexport.errors import UsageError
    from samexport.families import get_family

    with pytest.raises(UsageError, match="unknown model family 'sam2'"):
        get_family("sam2")


def test_mil_op_traits_are_declared_with_the_op():
    from samexport.mileval.registry import OPS

    assert OPS["reshape"].moves == "x" and OPS["concat"].moves == "values"
    assert OPS["conv"].moves is None and OPS["add"].moves is None


def family_names():
    from samexport.families import FAMILIES

    sys.path.insert(0, str(ROOT / "tests"))
    from toy_family import ThreeTokenFamily

    return set(FAMILIES) | {ThreeTokenFamily.name}


def outside_the_families(module: str) -> bool:
    return not module.startswith(("samexport.families", "samexport.modeling"))


def test_no_family_name_tests_outside_the_families():
    """A family is asked, never named: no comparison, `in` test, dict key or subscript with a registered
    family's name outside families/ and modeling/."""
    names = family_names()
    offenders = []
    for module, path in MODULES.items():
        if not outside_the_families(module):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
                values += [
                    e
                    for c in node.comparators
                    if isinstance(c, (ast.Tuple, ast.List, ast.Set))
                    for e in c.elts
                ]
            elif isinstance(node, ast.Dict):
                values = [k for k in node.keys if k is not None]
            elif isinstance(node, ast.Subscript):
                values = [node.slice]
            else:
                continue
            if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                offenders.append(f"{module}:{node.lineno}")
    assert not offenders, offenders


def test_no_module_or_class_outside_the_families_is_named_for_one():
    """Targets, checks, runtimes and bench are generic: no module or class outside families/ and modeling/
    carries a family's name (`rapsam_layout.py`, `RapSamOnnxTarget` were layouts x targets)."""
    names = {n.replace("_", "") for n in family_names() if n != "sam"}
    offenders = []
    for module, path in MODULES.items():
        if not outside_the_families(module):
            continue
        words = module.rsplit(".", 1)[-1].split("_")
        if "sam" in words or any(n in module.rsplit(".", 1)[-1].replace("_", "") for n in names):
            offenders.append(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(n in node.name.lower() for n in names | {"samlayout"}):
                offenders.append(f"{module}.{node.name}")
    assert not offenders, offenders


def test_no_test_module_imports_another():
    """Shared test code lives in helpers, toy_family and harness_golden, never in a test module."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name} imports {n}" for n in names if n.split(".")[-1].startswith("test_")]
    assert not offenders, offenders


def test_swift_reads_the_families_python_writes():
    """SAMInputContract.Family's raw values are the family names written into every contract."""
    import re

    from samexport.families import FAMILIES

    source = swift_source("InputContract.swift")
    body = source[source.index("enum Family") : source.index("}", source.index("enum Family"))]
    cases = {m.group(2) or m.group(1) for m in re.finditer(r'case (\w+)(?: = "(\w+)")?', body)}
    # RAP-SAM packages are not written yet (issue 16), nor is EdgeTAM's tracker in Swift (issue 33): the
    # harness has no contract of theirs to read
    assert cases == set(FAMILIES) - {"threetoken", "rapsam", "edgetam"}
    assert "let family: String?" in source and "pad_color_rgb == nil" not in source


def family_package(module: str):
    """The family package a module belongs to (samexport.families.<family>...), or None."""
    from samexport.families import FAMILY_PACKAGES

    parts = module.split(".")
    inside = parts[:2] == ["samexport", "families"] and len(parts) > 2
    return parts[2] if inside and parts[2] in FAMILY_PACKAGES else None


def test_every_family_is_a_package():
    """families/ holds the shared base, the registries and SAM-style's shared parts, and one package per
    family; no family module sits at the package's top level under a generic name."""
    from samexport.families import FAMILIES, FAMILY_PACKAGES

    assert set(FAMILY_PACKAGES) == set(FAMILIES)
    for name in FAMILY_PACKAGES:
        assert (PACKAGE / "families" / name / "__init__.py").is_file(), name
    loose = sorted(p.name for p in (PACKAGE / "families").glob("*.py"))
    assert loose == ["__init__.py", "base.py", "registry.py", "sam_style.py"], loose
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert not top & {"video", "video_segment", "panoptic", "query_segment", "transforms", "prompt_rules"}


def test_no_module_outside_the_families_serves_one_family():
    """Outside families/ and modeling/, a module reaches a family through the registries, never by importing
    a family's package (what serves one family only lives in that family's package)."""
    offenders = sorted(
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        if outside_the_families(m)
        for d in deps
        if family_package(d)
    )
    assert not offenders, offenders


def test_family_packages_do_not_import_each_other():
    offenders = sorted(
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        if family_package(m)
        for d in deps
        if family_package(d) not in (None, family_package(m))
    )
    assert not offenders, offenders
