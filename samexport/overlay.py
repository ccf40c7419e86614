"""A picture of masks on their image: fills in distinct colours, outlines, the prompts, a legend."""

from __future__ import annotations

import colorsys
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

FILL_ALPHA = 0.45
LEGEND_ROWS = 12
POSITIVE, NEGATIVE, BOX = (40, 220, 60), (235, 40, 40), (255, 200, 0)


def palette(n: int) -> List[tuple]:
    """n well-separated saturated colours (golden-ratio hues)."""
    return [
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 0.95)) for i in range(n)
    ]


def draw_overlay(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    labels: Sequence[str],
    points: Sequence[Sequence[float]] = (),
    point_labels: Sequence[int] = (),
    boxes: Sequence[Sequence[float]] = (),
    title: str = "",
) -> Image.Image:
    """HxWx3 uint8 image + boolean HxW masks (drawn largest first so small ones stay visible) ->
    RGB picture with the legend below the image (one row per mask: colour, `labels[i]`)."""
    h, w = image.shape[:2]
    colours = palette(len(masks))
    canvas = image.astype(np.float32)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    edges = np.zeros((h, w), dtype=bool)
    edge_colour = np.zeros((h, w, 3), dtype=np.float32)
    for i in order:
        mask = masks[i]
        canvas[mask] = (1 - FILL_ALPHA) * canvas[mask] + FILL_ALPHA * np.array(colours[i], dtype=np.float32)
        outline = mask & ~ndimage.binary_erosion(mask, iterations=2, border_value=0)
        edges |= outline
        edge_colour[outline] = colours[i]
    canvas[edges] = edge_colour[edges]
    picture = Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    radius = max(4, round(min(h, w) / 120))
    for (x, y), label in zip(points, point_labels):
        colour = POSITIVE if label == 1 else NEGATIVE
        draw.ellipse(
            [x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(255, 255, 255), width=2
        )
    for x0, y0, x1, y1 in boxes:
        draw.rectangle([x0, y0, x1, y1], outline=BOX, width=max(2, radius // 2))
    return _with_legend(picture, colours, labels, title)


def _with_legend(
    picture: Image.Image, colours: List[tuple], labels: Sequence[str], title: str
) -> Image.Image:
    font = ImageFont.load_default(size=max(12, picture.height // 40))
    line = int(font.size * 1.5)
    shown = list(labels[:LEGEND_ROWS])
    rows = [title] if title else []
    rows += shown + ([f"... and {len(labels) - len(shown)} more masks"] if len(labels) > len(shown) else [])
    if not rows:
        return picture
    legend = Image.new("RGB", (picture.width, line * len(rows) + line // 2), (24, 24, 24))
    draw = ImageDraw.Draw(legend)
    offset = 1 if title else 0
    for r, text in enumerate(rows):
        y = line // 4 + r * line
        x = line // 2
        mask_index = r - offset
        if 0 <= mask_index < len(shown):
            draw.rectangle([x, y + 2, x + line - 6, y + line - 6], fill=colours[mask_index])
            x += line
        draw.text((x, y), text, fill=(235, 235, 235), font=font)
    out = Image.new("RGB", (picture.width, picture.height + legend.height))
    out.paste(picture, (0, 0))
    out.paste(legend, (0, picture.height))
    return out


def mask_label(index: int, record: Dict) -> str:
    """`#1  IoU 0.93  stability 0.97  area 1234 px` (a class name, IoU and stability where there are)."""
    text = f"#{index + 1}"
    if record.get("category"):
        text += f"  {record['category']}"
    if record.get("predicted_iou") is not None:
        text += f"  IoU {record['predicted_iou']:.3f}"
    if record.get("stability_score") is not None:
        text += f"  stability {record['stability_score']:.3f}"
    return text + f"  area {record['area']} px"
