"""Shared fixtures: small, seeded data and networks so the default suite stays fast."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def tiny_data():
    """A learnable 10-class problem on 1x8x8 images (class-dependent mean images)."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(10, 1, 8, 8, generator=gen)
    y = torch.arange(400) % 10
    x = (centres[y] + 0.15 * torch.randn(400, 1, 8, 8, generator=gen)).clamp(0, 1)
    return x, y
