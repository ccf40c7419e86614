"""Every registered family meets the same contract (the toy families too): its parts' interfaces, modules
and references agree, and a PyTorch session of one of its models runs every part at its interface's
default shapes with the outputs the interface declares."""

from __future__ import annotations

import numpy as np
import pytest

from samexport.families import FAMILIES
from samexport.families.registry import get_spec, list_models
from samexport.parts import PartForm


def first_model(family: str) -> str:
    return next(name for name in list_models() if get_spec(name).family.name == family)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_interfaces_modules_and_references_agree(family):
    spec = get_spec(first_model(family))
    fam = spec.family
    form = PartForm(packed_prompts=False, image_input=False, dynamic=True)
    interfaces = fam.part_interfaces(fam.session_shapes(), form)
    model = spec.build_meta()
    assert set(fam.part_modules(model, form)) == set(interfaces)
    assert set(fam.bench_parts) <= set(interfaces)
    for name, interface in interfaces.items():
        assert interface.part == name
        inputs = set(interface.input_names)
        for source in (*interface.upstream.values(), *(c.part for c in interface.carried.values())):
            assert source in interfaces, (name, source)
        assert set(interface.upstream) | set(interface.carried) <= inputs
        for carried in interface.carried.values():
            assert carried.output in interfaces[carried.part].output_names
        dim = interface.bench.dim
        assert dim is None or any(dim in t.shape for t in interface.inputs), (name, dim)
        for function in interface.functions:
            assert set(function.shapes) == inputs


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_pytorch_session_runs_every_part_with_the_declared_outputs(family):
    import warnings

    from samexport.zoo import torch_session

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session, notes = torch_session(first_model(family))
    assert notes and not session.unavailable  # the fixture fill, with every class set
    rng = np.random.default_rng(0)
    for name, interface in session.interfaces.items():
        shapes = interface.default.shapes
        feeds = {n: rng.standard_normal(shapes[n]).astype(np.float32) for n in interface.input_names}
        sizes = {
            d: shapes[t.name][axis]
            for t in interface.inputs
            for axis, d in enumerate(t.shape)
            if isinstance(d, str)
        }
        outputs = session.run(name, feeds)
        assert list(outputs) == interface.output_names
        for tensor in interface.outputs:
            assert outputs[tensor.name].shape == tensor.sized(sizes), (name, tensor.name)
