"""Core AI export: `torch.export` per static shape, Apple's converter (`coreai_torch.TorchConverter`), one
`.aimodel` asset per part with one function per shape, samexport's metadata in the asset's
`creatorDefinedMetadata`; and the segmenter bundle's `metadata.json` Apple's model bundles carry.

Apple's reference recipe for EfficientSAM (apple/coreai-models `models/efficient-sam/export.py`) exports
with `torch.export.export(...).run_decompositions(get_decomp_table())` and `add_exported_program`; this
does the same for any part.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Dict, List

import torch

# coreai-torch compares torch's version with its own bound, and 2.13.0+cpu sorts above 2.13.0
_TORCH_NOTE = "coreai-torch has only been validated with torch"
SEGMENTER_METADATA_VERSION = "0.2"  # the version Apple's EfficientSAM bundle writes


def converter_modules():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TORCH_NOTE)
        import coreai_torch
        from coreai.runtime import AIModelAssetMetadata
    return coreai_torch, AIModelAssetMetadata


def convert_part(
    module: torch.nn.Module, input_names: List[str], output_names: List[str], functions
) -> object:
    """An AIProgram with one entry point per function ((name, input name -> shape), the default first, named
    `main`): each traced by `torch.export` at its static shapes and decomposed as Apple's recipe does."""
    coreai_torch, _ = converter_modules()
    converter = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE)
    decompositions = coreai_torch.get_decomp_table()
    module = module.eval()
    from ..console import converter_output_held
    from ..modeling.deform_conv import sampling_by_gather

    # coreai_torch lowers no aten.grid_sampler_2d: deformable convolutions sample by explicit gathers
    with converter_output_held(), torch.no_grad(), warnings.catch_warnings(), sampling_by_gather():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's own pytree deprecations
        for name, shapes in functions:
            example = tuple(torch.zeros(shapes[n]) for n in input_names)
            program = torch.export.export(module, example).run_decompositions(decompositions)
            converter.add_exported_program(
                program, input_names=input_names, output_names=output_names, entrypoint_name=name
            )
        return converter.to_coreai()


def save(program, path: Path, description: str, metadata: Dict[str, str]) -> None:
    from ..version import __version__

    _, AIModelAssetMetadata = converter_modules()
    asset_metadata = AIModelAssetMetadata()
    asset_metadata.author = "samexport"
    asset_metadata.license = "Weights: see the official model's license. Export code: Apache-2.0 (samexport)."
    asset_metadata.model_description = f"{description} (samexport {__version__})"
    for key, value in metadata.items():
        asset_metadata.set_custom(key, value)
    if path.exists():
        shutil.rmtree(path)
    program.save_asset(Path(path), asset_metadata)


def read_json_object(path: Path, what: str) -> Dict:
    """A JSON object from a file convert wrote, or a one-line UsageError naming `what` is damaged."""
    from ..errors import UsageError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as e:
        data = e
    if not isinstance(data, dict):
        why = type(data).__name__ if isinstance(data, Exception) else "not a JSON object"
        raise UsageError(f"{what} is not readable ({why}); convert it again") from None
    return data


def read_metadata(path: Path) -> Dict[str, str]:
    """The samexport metadata of a saved asset (its metadata.json; no runtime needed)."""
    from ..errors import UsageError

    data = read_json_object(Path(path) / "metadata.json", f"{Path(path).name}'s metadata.json")
    custom = data.get("creatorDefinedMetadata", {})
    if not isinstance(custom, dict):
        raise UsageError(f"{Path(path).name}'s creatorDefinedMetadata is not an object; convert it again")
    return {k: str(v) for k, v in custom.items()}


def bundle_assets(bundle: Path) -> Dict[str, Path]:
    """part -> asset path of a segmenter bundle (its metadata.json's `assets`), each inside the bundle."""
    from ..errors import UsageError

    document = read_json_object(Path(bundle) / "metadata.json", f"{Path(bundle).name}/metadata.json")
    assets = document.get("assets")
    if document.get("kind") != "segmenter" or not isinstance(assets, dict) or not assets:
        raise UsageError(f"{Path(bundle).name}/metadata.json names no segmenter assets; convert it again")
    folder = Path(bundle).resolve()
    found = {}
    for part, name in assets.items():
        asset = Path(bundle) / str(name)
        if Path(str(name)).is_absolute() or ".." in Path(str(name)).parts or asset.resolve().parent != folder:
            raise UsageError(f"{Path(bundle).name}/metadata.json names {name!r}, outside the bundle")
        found[str(part)] = asset
    return found


def write_segmenter_bundle(
    folder: Path, name: str, assets: Dict[str, str], contract: Dict, extra: Dict
) -> Path:
    """`metadata.json` of a segmenter bundle: Apple's fields (metadata_version, kind, name, assets) and
    samexport's contract, so that an app needs nothing else."""
    path = Path(folder) / "metadata.json"
    document = {
        "metadata_version": SEGMENTER_METADATA_VERSION,
        "kind": "segmenter",
        "name": name,
        "assets": assets,
        "samexport": {"contract": contract, **extra},
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
