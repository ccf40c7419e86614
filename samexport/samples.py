"""Deterministic validation inputs: a synthetic photo-like image, a clip of it moving, a set of prompts."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np


def validation_image(height: int = 480, width: int = 640) -> np.ndarray:
    """HxWx3 uint8: smooth colour gradients, three filled shapes and mild noise (seeded)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack(
        [80 + 100 * xx / width, 60 + 120 * yy / height, 140 + 60 * np.sin(xx / 53 + yy / 71)], -1
    )
    ellipse = ((xx - width * 0.3) / (width * 0.15)) ** 2 + ((yy - height * 0.4) / (height * 0.2)) ** 2 < 1
    image[ellipse] = (220, 60, 50)
    image[int(height * 0.15) : int(height * 0.55), int(width * 0.6) : int(width * 0.9)] = (40, 90, 210)
    triangle = (yy > height * 0.6) & (np.abs(xx - width * 0.7) < (yy - height * 0.6) * 0.8)
    image[triangle] = (250, 230, 70)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


VALIDATION_SHIFT = (6, 10)  # (dy, dx) pixels per frame of the validation clip


def validation_clip(frames: int) -> List[np.ndarray]:
    """`frames` HxWx3 uint8 frames: the validation image rolled by `VALIDATION_SHIFT` per frame."""
    image = validation_image()
    dy, dx = VALIDATION_SHIFT
    return [np.roll(image, (dy * t, dx * t), axis=(0, 1)) for t in range(frames)]


def validation_prompts(height: int = 480, width: int = 640) -> List[Tuple[str, dict]]:
    """(name, kwargs for model.prompt_tokens) in original pixels."""
    return [
        ("one click", {"points": [[width * 0.3, height * 0.4]], "labels": [1]}),
        (
            "click + negative click",
            {"points": [[width * 0.75, height * 0.35], [width * 0.1, height * 0.1]], "labels": [1, 0]},
        ),
        ("box", {"box": [width * 0.45, height * 0.6, width * 0.95, height * 0.98]}),
        (
            "box + click",
            {
                "points": [[width * 0.7, height * 0.3]],
                "labels": [1],
                "box": [width * 0.55, height * 0.1, width * 0.95, height * 0.6],
            },
        ),
        (
            "five clicks",
            {
                "points": [
                    [width * f, height * g]
                    for f, g in [(0.2, 0.3), (0.3, 0.5), (0.7, 0.2), (0.8, 0.4), (0.5, 0.9)]
                ],
                "labels": [1, 1, 0, 1, 0],
            },
        ),
    ]


CALIBRATION_SIZES = ((480, 640), (640, 480), (600, 800), (512, 512))


def calibration_images() -> List[np.ndarray]:
    """HxWx3 uint8 scenes for activation calibration, none of them the validation image: seeded
    gradients, ellipses and rectangles of random colours, sizes and aspect ratios, plus noise."""
    images = []
    for seed, (height, width) in enumerate(CALIBRATION_SIZES, start=1):
        rng = np.random.default_rng(100 + seed)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        base, slope = rng.uniform(20, 200, 3), rng.uniform(-80, 80, (2, 3))
        image = base + xx[..., None] / width * slope[0] + yy[..., None] / height * slope[1]
        for _ in range(int(rng.integers(3, 8))):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry, rx = rng.uniform(0.05, 0.3) * height, rng.uniform(0.05, 0.3) * width
            if rng.random() < 0.5:
                shape = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            else:
                shape = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
            image[shape] = rng.uniform(0, 255, 3)
        image += rng.normal(0, rng.uniform(2, 12), image.shape)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images
