"""Prompt rules: how clicks and boxes become decoder tokens, one object per convention.

The same object answers both questions a convention raises: the tokens of one prompt (what the model's
`prompt_tokens` builds, in the model frame) and the token counts a decoder must take so that every
prompt of P points is exact (what an export declares). The model class and its family hold the same
instance, so the two can never disagree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List, Optional, Sequence, Tuple

import torch


class PromptRule(ABC):
    @abstractmethod
    def token_counts(self, points: Sequence[int]) -> List[int]:
        """Decoder token counts that make every prompt of `points` points exact (a box counts as 2)."""

    @abstractmethod
    def click_tokens(self, clicks: int) -> int:
        """Tokens of a prompt made of `clicks` clicks alone."""

    @abstractmethod
    def clicks_filling(self, tokens: int) -> int:
        """How many clicks make a clicks-only prompt of exactly `tokens` tokens."""


class TokenRule(PromptRule):
    """A prompt as one token list: clicks (labels 1/0), box corners (labels 2, 3), padding (label -1)."""

    @abstractmethod
    def tokens(
        self, coords: Optional[torch.Tensor], labels: Optional[torch.Tensor], box: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Model-frame clicks (K, 2) with labels (K,), and a box (2, 2) -> coords (1, T, 2), labels (1, T)."""

    @staticmethod
    def concatenated(coords, labels, box) -> Tuple[torch.Tensor, torch.Tensor]:
        parts_c, parts_l = [], []
        if coords is not None:
            parts_c.append(coords.reshape(-1, 2).float())
            parts_l.append(labels.reshape(-1).long())
        if box is not None:
            parts_c.append(box.reshape(2, 2).float())
            parts_l.append(torch.tensor([2, 3]))
        return torch.cat(parts_c), torch.cat(parts_l)


class PaddingTokenRule(TokenRule):
    """SAM's: clicks, then one (0, 0) padding token with label -1 only when there is no box, then the box
    corners (the layout of the official ONNX decoder). P clicks: P + 1 tokens; with a box: P."""

    def tokens(self, coords, labels, box):
        if box is None:
            pad_c, pad_l = torch.zeros(1, 2), torch.tensor([-1])
            coords = pad_c if coords is None else torch.cat([coords.reshape(-1, 2).float(), pad_c])
            labels = pad_l if labels is None else torch.cat([labels.reshape(-1).long(), pad_l])
        c, lab = self.concatenated(coords, labels, box)
        return c[None], lab[None]

    def token_counts(self, points: Sequence[int]) -> List[int]:
        return sorted({p + 1 for p in points} | {p for p in points if p >= 2})

    def click_tokens(self, clicks: int) -> int:
        return clicks + 1

    def clicks_filling(self, tokens: int) -> int:
        return tokens - 1


class FixedTokensRule(TokenRule):
    """Clicks then box corners, padded with (`pad`, `pad`)/-1 or cut to exactly `count` tokens (EfficientSAM:
    6 tokens padded with -1, as the official model pads internally)."""

    def __init__(self, count: int, pad: float) -> None:
        self.count, self.pad = count, pad

    def tokens(self, coords, labels, box):
        c, lab = self.concatenated(coords, labels, box)
        return self.padded(c[None], lab[None])

    def padded(self, coords: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 2), (B, T) -> exactly `count` tokens each."""
        n = self.count
        coords, labels = coords[:, :n], labels[:, :n]
        missing = n - coords.shape[1]
        if missing:
            coords = torch.cat([coords, coords.new_full((coords.shape[0], missing, 2), self.pad)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], missing), -1)], dim=1)
        return coords, labels

    def token_counts(self, points: Sequence[int]) -> List[int]:
        return [self.count]

    def click_tokens(self, clicks: int) -> int:
        return self.count

    def clicks_filling(self, tokens: int) -> int:
        return tokens


class QueryRule(PromptRule):
    """Every click and every box is its own query (RAP-SAM): a decoder for N prompts takes N queries."""

    def token_counts(self, points: Sequence[int]) -> List[int]:
        return sorted(set(points))

    def click_tokens(self, clicks: int) -> int:
        return clicks

    def clicks_filling(self, tokens: int) -> int:
        return tokens


SAM_PROMPTS = PaddingTokenRule()
QUERY_PROMPTS = QueryRule()
