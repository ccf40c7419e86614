"""EdgeTAM: SAM 2's memory-bank video tracker on a RepViT-M1 trunk (family.py, models.py), its stateless parts
(modules.py) and the tracker over a session (tracker.py)."""

from . import models  # noqa: F401 (registers the model row)
