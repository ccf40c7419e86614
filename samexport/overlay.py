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


def paint_masks(image: np.ndarray, masks: Sequence[np.ndarray], colours: Sequence[tuple]) -> np.ndarray:
    """HxWx3 uint8 image + boolean HxW masks -> HxWx3 uint8: each mask filled in its colour (largest first,
    so small ones stay visible) and outlined."""
    h, w = image.shape[:2]
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
    return canvas.round().clip(0, 255).astype(np.uint8)


def draw_overlay(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    labels: Sequence[str],
    points: Sequence[Sequence[float]] = (),
    point_labels: Sequence[int] = (),
    boxes: Sequence[Sequence[float]] = (),
    title: str = "",
    point_masks: Sequence[int] = (),
    box_masks: Sequence[int] = (),
) -> Image.Image:
    """HxWx3 uint8 image + boolean HxW masks (drawn largest first so small ones stay visible) ->
    RGB picture with the legend below the image (one row per mask: colour, `labels[i]`). Each prompt is
    drawn in the colour of the mask it asked for (`point_masks[i]`, `box_masks[j]`: that mask's index),
    numbered like the mask and its legend row; a click's fill still says positive (green) or negative
    (red)."""
    h, w = image.shape[:2]
    colours = palette(len(masks))
    canvas = paint_masks(image, masks, colours)
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    radius = max(4, round(min(h, w) / 120))
    font = ImageFont.load_default(size=max(10, 2 * radius))
    for i, ((x, y), label) in enumerate(zip(points, point_labels)):
        owner = _owner(point_masks, i, len(masks))
        ring = colours[owner] if owner is not None else (255, 255, 255)
        draw.ellipse(
            [x - radius, y - radius, x + radius, y + radius],
            fill=POSITIVE if label == 1 else NEGATIVE,
            outline=ring,
            width=max(2, radius // 2),
        )
        if owner is not None:
            _number(draw, (x + radius + 2, y - radius - 2), owner, ring, font)
    for j, (x0, y0, x1, y1) in enumerate(boxes):
        owner = _owner(box_masks, j, len(masks))
        colour = colours[owner] if owner is not None else BOX
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=max(2, radius // 2))
        if owner is not None:
            _number(draw, (x0 + 3, y0 + 2), owner, colour, font)
    return _with_legend(picture, colours, labels, title)


def _owner(owners: Sequence[int], index: int, masks: int):
    return owners[index] if index < len(owners) and 0 <= owners[index] < masks else None


def _number(draw: ImageDraw.ImageDraw, at, mask_index: int, colour: tuple, font) -> None:
    """`#n` (the mask's legend number) in the mask's colour on a dark plate, at `at` (top left)."""
    text = f"#{mask_index + 1}"
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill=(24, 24, 24))
    draw.text(at, text, fill=colour, font=font)


def _with_legend(
    picture: Image.Image, colours: List[tuple], labels: Sequence[str], title: str
) -> Image.Image:
    font = ImageFont.load_default(size=max(12, picture.height // 40))
    line = int(font.size * 1.5)
    shown = list(labels[:LEGEND_ROWS])
    more = [f"... and {len(labels) - len(shown)} more masks"] if len(labels) > len(shown) else []
    # (text, swatch colour or None), every entry wrapped to the picture's width: nothing is cut off
    width = picture.width - line  # half a line of margin each side
    rows = [(text, None) for text in wrap(title, font, width)] if title else []
    for i, text in enumerate(shown):
        for k, part in enumerate(wrap(text, font, width - line)):
            rows.append((part, colours[i] if k == 0 else ()))
    rows += [(text, None) for text in more]
    if not rows:
        return picture
    legend = Image.new("RGB", (picture.width, line * len(rows) + line // 2), (24, 24, 24))
    draw = ImageDraw.Draw(legend)
    for r, (text, swatch) in enumerate(rows):
        y = line // 4 + r * line
        x = line // 2
        if swatch is not None:  # a mask's row: its swatch, or the indent of its continuation lines
            if swatch:
                draw.rectangle([x, y + 2, x + line - 6, y + line - 6], fill=swatch)
            x += line
        draw.text((x, y), text, fill=(235, 235, 235), font=font)
    out = Image.new("RGB", (picture.width, picture.height + legend.height))
    out.paste(picture, (0, 0))
    out.paste(legend, (0, picture.height))
    return out


def wrap(text: str, font, width: float) -> List[str]:
    """`text` broken at spaces into lines no wider than `width` pixels in `font` (a word longer than the
    width is broken inside)."""
    lines: List[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
        while font.getlength(current) > width and len(current) > 1:
            cut = next((i for i in range(len(current) - 1, 0, -1) if font.getlength(current[:i]) <= width), 1)
            lines.append(current[:cut])
            current = current[cut:]
    return lines + [current] if current else lines


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
