"""RAP-SAM's query decoder (`RapSAMVideoHead`): three dynamic-convolution stages shared by prompt
queries and the 100 panoptic queries, then a prompt adaptor or a panoptic adaptor.

Keys as in the official checkpoint under `panoptic_head.`. Every stage pools the mask features
under the HARD mask sigmoid(logits) > 0.5 as an unnormalised sum over up to H*W pixels
(`hard_mask_pool`): the sums reach 1e5 and overflow float16, which is why exports keep the pooled
path in float32 (see `samexport.families.rapsam`).
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from typing import List, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 133  # COCO panoptic: 80 things + 53 stuff; the classifier adds a no-object row
NUM_THINGS = 80
NUM_QUERIES = 100
VIDEO_CLASSES = 40  # YouTube-VIS 2019: the video path's class set (all things)

CLIP_DIM = 768
PROTOTYPES = 17
LOGIT_SCALE = 4.6052  # log(100): class logits are 100 x cosine


class GivenHardMasks:
    """Pooling under masks given from outside, in call order: how a check recomputes PyTorch's outputs
    with an export's own hard masks, so that a pixel whose logit is within rounding of the threshold
    (and so flips between kernels) is judged as a flip, not as an export error. Inside `with
    GivenHardMasks(masks) as given:` each `hard_mask_pool` takes the next mask and records the logits
    it was given in `given.logits`."""

    _active: ContextVar[Optional["GivenHardMasks"]] = ContextVar("given_hard_masks", default=None)

    def __init__(self, masks: Sequence[np.ndarray]) -> None:
        self.masks = list(masks)
        self.logits: List[torch.Tensor] = []

    def __enter__(self) -> "GivenHardMasks":
        self._token = self._active.set(self)
        return self

    def __exit__(self, *exc) -> None:
        self._active.reset(self._token)
        if exc[0] is None and len(self.logits) != len(self.masks):
            raise ValueError(f"{len(self.masks)} hard masks given, {len(self.logits)} poolings ran")

    def next(self, mask_logits: torch.Tensor) -> torch.Tensor:
        index = len(self.logits)
        if index >= len(self.masks):
            raise ValueError(f"{len(self.masks)} hard masks given, more poolings ran")
        mask = torch.as_tensor(np.asarray(self.masks[index]))
        if tuple(mask.shape) != tuple(mask_logits.shape):
            raise ValueError(
                f"hard mask {index} has shape {tuple(mask.shape)}, the logits {tuple(mask_logits.shape)}"
            )
        self.logits.append(mask_logits.detach())
        return mask.to(torch.bool)


def hard_mask_pool(mask_logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) logits, (B, C, H, W) features -> (B, N, C): features summed where sigmoid > 0.5."""
    given = GivenHardMasks._active.get()
    hard = given.next(mask_logits) if given is not None else mask_logits.sigmoid() > 0.5
    return torch.matmul(hard.to(features.dtype).flatten(2), features.flatten(2).transpose(1, 2))


def masks_from_kernels(kernels: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """(B, N, C) kernels, (B, C, H, W) features -> (B, N, H, W) mask logits (a 1x1 dynamic conv)."""
    b, c, h, w = features.shape
    return torch.matmul(kernels, features.flatten(2)).view(b, -1, h, w)


class MultiheadAttention(nn.Module):
    """torch `nn.MultiheadAttention` (batch first here), keys `in_proj_weight`, `in_proj_bias`,
    `out_proj`. `isolated=True` is attention where every query sees only its own key (the official
    prompt self-attention mask): softmax over one key is 1, so the output is out_proj(v_proj(x))."""

    def __init__(self, dim: int = 256, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, isolated: bool = False
    ) -> torch.Tensor:
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        v = F.linear(value, wv, bv)
        if isolated:
            return self.out_proj(v)
        q, k = F.linear(query, wq, bq), F.linear(key, wk, bk)
        b, n, dim = q.shape
        head_dim = dim // self.heads
        q = q.view(b, n, self.heads, head_dim).transpose(1, 2) * (1.0 / math.sqrt(head_dim))
        k = k.view(b, -1, self.heads, head_dim).permute(0, 2, 3, 1)
        v = v.view(b, -1, self.heads, head_dim).transpose(1, 2)
        out = torch.matmul(torch.matmul(q, k).softmax(dim=-1), v)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, dim))


class KernelUpdator(nn.Module):
    """K-Net's kernel update: gates from pooled features x current kernels -> new kernels (B, N, C)."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dim = dim
        self.dynamic_layer = nn.Linear(dim, 2 * dim)
        self.input_layer = nn.Linear(dim, 2 * dim)
        self.input_gate = nn.Linear(dim, dim)
        self.update_gate = nn.Linear(dim, dim)
        self.norm_in = nn.LayerNorm(dim)
        self.norm_out = nn.LayerNorm(dim)
        self.input_norm_in = nn.LayerNorm(dim)
        self.input_norm_out = nn.LayerNorm(dim)
        self.fc_layer = nn.Linear(dim, dim)
        self.fc_norm = nn.LayerNorm(dim)

    def forward(self, pooled: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        parameters = self.dynamic_layer(pooled)
        param_in, param_out = parameters[..., : self.dim], parameters[..., self.dim :]
        inputs = self.input_layer(kernels)
        input_in, input_out = inputs[..., : self.dim], inputs[..., self.dim :]
        gate = input_in * param_in
        input_gate = self.input_norm_in(self.input_gate(gate)).sigmoid()
        update_gate = self.norm_in(self.update_gate(gate)).sigmoid()
        features = update_gate * self.norm_out(param_out) + input_gate * self.input_norm_out(input_out)
        return F.relu(self.fc_norm(self.fc_layer(features)))


class FFN(nn.Module):
    """x + Linear(ReLU(Linear(x))); keys `layers.0.0`, `layers.1` (mmcv's FFN layout)."""

    def __init__(self, dim: int = 256, hidden: int = 2048) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


def _mlp(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out))


def cosine_class_logits(embedding: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """(B, N, 768) embeddings, classifier (768, classes + 1, prototypes) -> (B, N, classes + 1):
    100 x the best cosine over each class's prototypes."""
    d, classes, prototypes = classifier.shape
    scores = torch.matmul(F.normalize(embedding, dim=-1), classifier.reshape(d, classes * prototypes))
    return math.exp(LOGIT_SCALE) * scores.view(*scores.shape[:-1], classes, prototypes).amax(-1)


class StageOutput(NamedTuple):
    queries: torch.Tensor  # (B, N, 256) the stage's object features (next stage's kernels)
    mask_logits: torch.Tensor  # (B, N, H, W)
    iou: torch.Tensor  # (B, N, 1)


class CrossAttenHead(nn.Module):
    """One stage: pool under the hard masks, kernel update, self-attention, FFN, then new masks and IoU.

    `cls_fcs` and `cls_proj` (the stage's class head) are in the checkpoint, but no RAP-SAM output reads
    them: the panoptic adaptor classifies the final queries itself."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.kernel_update = KernelUpdator(dim)
        self.s_atten = MultiheadAttention(dim, 8)
        self.s_atten_norm = nn.LayerNorm(dim)
        self.ffn = FFN(dim, 2048)
        self.ffn_norm = nn.LayerNorm(dim)
        self.cls_fcs = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.LayerNorm(dim), nn.ReLU())
        self.cls_proj = _mlp(dim, CLIP_DIM)
        self.mask_fcs = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.LayerNorm(dim), nn.ReLU())
        self.fc_mask = nn.Linear(dim, dim)
        self.iou_embed = _mlp(dim, 1)

    def forward(
        self, features: torch.Tensor, queries: torch.Tensor, mask_logits: torch.Tensor, isolated: bool
    ) -> StageOutput:
        k = self.kernel_update(hard_mask_pool(mask_logits, features), queries)
        k = self.s_atten_norm(k + self.s_atten(k, k, k, isolated=isolated))
        queries = self.ffn_norm(self.ffn(k))
        mask_feat = self.mask_fcs(queries)
        masks = masks_from_kernels(self.fc_mask(mask_feat), features)
        return StageOutput(queries, masks, self.iou_embed(mask_feat))


class PromptAttention(nn.Module):
    """mmcv `MultiheadAttention` (batch first, identity shortcut): queries attend to the mask features."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.attn = MultiheadAttention(dim, 8)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return queries + self.attn(queries, keys, keys)


class RapSamHead(nn.Module):
    """Mask features (B, 256, H, W) + queries -> mask logits at the features' resolution.

    `classifier` (768, 134, 17) is the open-vocabulary class embedding of the COCO panoptic classes and
    `video_classifier` (768, 41, 17) that of YouTube-VIS 2019 (the video path); neither is in the checkpoint.
    """

    def __init__(self, dim: int = 256, stages: int = 3) -> None:
        super().__init__()
        self.mask_tokens = nn.Embedding(1, dim)
        self.pb_embedding = nn.Embedding(2, dim)
        self.pos_linear = nn.Linear(2 * dim, dim)
        self.kernels = nn.Embedding(NUM_QUERIES, dim)
        self.mask_heads = nn.ModuleList(CrossAttenHead(dim) for _ in range(stages))
        self.panoptic_attn = KernelUpdator(dim)
        self.panoptic_cls = nn.Sequential(nn.Linear(dim, CLIP_DIM))
        self.prompt_attn = PromptAttention(dim)
        self.prompt_norm = nn.LayerNorm(dim)
        self.prompt_iou = nn.Linear(dim, 1)
        self.register_buffer(
            "classifier", torch.zeros(CLIP_DIM, NUM_CLASSES + 1, PROTOTYPES), persistent=False
        )
        self.register_buffer(
            "video_classifier", torch.zeros(CLIP_DIM, VIDEO_CLASSES + 1, PROTOTYPES), persistent=False
        )

    def prompt_queries(self, boxes: torch.Tensor, image_hw) -> torch.Tensor:
        """(B, N, 4) xyxy prompts in the resized frame, unpadded (h, w) -> (B, N, 256) queries."""
        return (
            self.pb_embedding.weight[1]
            + self.mask_tokens.weight[0]
            + self.pos_linear(box_encoding(boxes, image_hw))
        )

    def stages(self, features: torch.Tensor, queries: torch.Tensor, isolated: bool) -> List[StageOutput]:
        """Every stage's output; the first stage pools under the queries' own initial masks."""
        outputs: List[StageOutput] = []
        masks = masks_from_kernels(queries, features)
        for head in self.mask_heads:
            out = head(features, queries, masks, isolated)
            outputs.append(out)
            queries, masks = out.queries, out.mask_logits
        return outputs

    def prompt_adaptor(self, features: torch.Tensor, last: StageOutput):
        """-> mask logits (B, N, H, W) and raw IoU (B, N, 1) of the prompt queries."""
        keys = features.flatten(2).transpose(1, 2)
        queries = self.prompt_norm(self.prompt_attn(last.queries, keys))
        return masks_from_kernels(queries, features), self.prompt_iou(queries)

    def panoptic_adaptor(self, features: torch.Tensor, last: StageOutput, classifier: torch.Tensor):
        """-> class logits (B, 100, classes + 1), mask logits (B, 100, H, W) and the final query embeddings
        (B, 100, 256) of the object queries."""
        queries = self.panoptic_attn(hard_mask_pool(last.mask_logits, features), last.queries)
        classes = cosine_class_logits(self.panoptic_cls(queries), classifier)
        return classes, masks_from_kernels(queries, features), queries

    def object_queries(self, batch: int) -> torch.Tensor:
        return self.kernels.weight[None].expand(batch, -1, -1)

    def decode_prompts(self, features: torch.Tensor, boxes: torch.Tensor, image_hw):
        """features (B, 256, h, w), (B, N, 4) xyxy prompts in the resized frame and its unpadded (h, w) ->
        mask logits (B, N, h, w), raw IoU (B, N, 1)."""
        queries = self.prompt_queries(boxes, image_hw)
        return self.prompt_adaptor(features, self.stages(features, queries, isolated=True)[-1])

    def segment_panoptic(self, features: torch.Tensor):
        """features (B, 256, h, w) -> class logits (B, 100, 134), mask logits (B, 100, h, w), raw."""
        last = self.stages(features, self.object_queries(features.shape[0]), isolated=False)[-1]
        return self.panoptic_adaptor(features, last, self.classifier)[:2]

    def segment_tube(self, features: torch.Tensor):
        """features of T frames (T, 256, h, w) -> one tube: class logits (1, 100, 41), mask logits
        (1, 100, T, h, w), query embeddings (1, 100, 256), raw.

        The official tube head (`RapSAMVideoHead` with T frames): the frames stacked along the height into
        one (1, 256, T*h, w) map, so every stage pools each query over all T frames at once and each query
        is one mask tube; classified against `video_classifier`."""
        t, c, h, w = features.shape
        tall = features.permute(1, 0, 2, 3).reshape(1, c, t * h, w)
        last = self.stages(tall, self.object_queries(1), isolated=False)[-1]
        classes, masks, queries = self.panoptic_adaptor(tall, last, self.video_classifier)
        return classes, masks.view(1, NUM_QUERIES, t, h, w), queries


def box_encoding(boxes: torch.Tensor, image_hw, num_feats: int = 128, temperature: float = 10000.0):
    """(B, N, 4) xyxy boxes in a (h, w) frame -> (B, N, 512): mmdet's `coordinate_to_encoding` of the
    normalised cxcywh box (after the official sigmoid(inverse_sigmoid) round trip), blocks (cy, cx, w, h)."""
    h, w = (torch.as_tensor(v, dtype=boxes.dtype, device=boxes.device) for v in image_hw)
    scale = torch.stack((w, h, w, h))  # sizes may be tensors (an exported input), not constants
    x0, y0, x1, y1 = (boxes / scale).unbind(-1)
    cxcywh = torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)
    coords = _inverse_sigmoid(cxcywh).sigmoid()
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

    def encode(v: torch.Tensor) -> torch.Tensor:
        p = (v * (2 * math.pi))[..., None] / dim_t
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)

    cx, cy, bw, bh = coords.unbind(-1)
    return torch.cat((encode(cy), encode(cx), encode(bw), encode(bh)), dim=-1)


def _inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """mmdet's `inverse_sigmoid`: clamp to [0, 1], log(x / (1 - x)) with both sides clamped at eps."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
