"""Classification + localisation on one shared feature extractor, and overlap metrics.

The lecture's recipe: beside the softmax class head, a 4-value box head (fc 4, no ReLU,
sigmoid so the box is in image-relative [0, 1] coordinates) trained with MSE.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


class ClassifierLocalizer(nn.Module):
    """`backbone` maps images to (N, feature_dim) features (flattened if they are maps)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.class_head = nn.Linear(feature_dim, num_classes)
        self.box_head = nn.Linear(feature_dim, 4)

    def forward(self, x) -> Tuple[torch.Tensor, torch.Tensor]:
        f = torch.flatten(self.backbone(x), 1)
        return self.class_head(f), torch.sigmoid(self.box_head(f))  # logits, (x1, y1, x2, y2)

    @staticmethod
    def loss(logits, boxes, labels, target_boxes, box_weight: float = 1.0):
        """Cross-entropy on the logits plus box_weight x MSE on the boxes."""
        return F.cross_entropy(logits, labels) + box_weight * F.mse_loss(boxes, target_boxes)


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|A ∩ B| / |A ∪ B| of two boolean masks (over all their elements); 1 when both empty."""
    a, b = a.bool(), b.bool()
    inter, union = (a & b).sum(), (a | b).sum()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones((), dtype=torch.float))


def dice(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """2 |A ∩ B| / (|A| + |B|) of two boolean masks; 1 when both empty."""
    a, b = a.bool(), b.bool()
    inter, total = (a & b).sum(), a.sum() + b.sum()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones((), dtype=torch.float))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of matching (x1, y1, x2, y2) boxes, shape (..., 4) -> (...)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda t: (t[..., 2:] - t[..., :2]).clamp(min=0).prod(-1)  # noqa: E731
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
