"""Shared fixtures: small models whose parameter layout exercises the grouping rules."""
import pytest
import torch
from torch import nn


@pytest.fixture
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
