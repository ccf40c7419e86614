"""Reparameterization: one walker over every module that exposes `fuse()` (timm's convention).

A module's `fuse()` returns the module that replaces it in inference: a fused conv or linear,
or itself when there is nothing to fold (its children are still visited).
"""

from __future__ import annotations

import copy

from torch import nn


def _fuse_children(module: nn.Module) -> int:
    count = 0
    for name, child in list(module.named_children()):
        fuse = getattr(child, "fuse", None)
        if callable(fuse):
            replacement = fuse()
            if replacement is not child:
                setattr(module, name, replacement)
                count += 1
                child = replacement
        count += _fuse_children(child)
    return count


def reparameterize_model(model: nn.Module) -> nn.Module:
    """A fused copy of `model` for inference; `model` itself is left untouched.

    The copy's `num_fused_modules` tells how many modules were replaced.
    """
    fused = copy.deepcopy(model).eval()
    fused.num_fused_modules = _fuse_children(fused)
    return fused
