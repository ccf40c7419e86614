"""How int8 activation calibration was fed: the parts' calibration feeds (`parts.Part.calibration`) are
the inputs an app would give, made from generated scenes (`samples.calibration_images`, never the
validation image) by PyTorch."""

from __future__ import annotations

from typing import Dict, List

from ..samples import CALIBRATION_SIZES


def describe(samples: Dict[str, List[Dict]]) -> Dict:
    return {
        "method": "min/max of every value while samexport.mileval evaluated the uncompressed program",
        "images": [f"generated scene {h}x{w}" for h, w in CALIBRATION_SIZES],
        "feeds": {part: len(feeds) for part, feeds in samples.items()},
        "mode": "linear_symmetric int8 (coremltools quantize/dequantize pairs)",
    }
