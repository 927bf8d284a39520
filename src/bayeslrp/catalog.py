"""Torch-free facts about the built-in datasets and architectures: one copy, imported everywhere.

The config validation, the data readers, the stages and the report all read these tables, so
a fact (the pixels of an image, the learnable layers of an architecture, the largest balanced
test subset) is written down once. Tests check every number against the data and the nets.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ARCHS", "DATASETS", "MAX_PARAMETERS", "ArchFacts", "DatasetFacts", "arch_fits",
           "dataset_facts", "learnable_layers", "parameter_count"]

#: Largest network (parameters of one sample) a config may ask for: 2**31 float32 weights are
#: 8 GiB before gradients and optimiser state, beyond any machine this package targets.
MAX_PARAMETERS = 2**31


@dataclass(frozen=True)
class DatasetFacts:
    """What is known of a built-in dataset before reading it.

    Attributes
    ----------
    shape : (int, int, int)
        ``(C, H, W)`` of one image.
    n_classes : int
        Number of classes (labels ``0 … n_classes − 1``).
    bounds : (float, float)
        Value range of the pixels (SPEC §1: [0, 1]).
    train_size : int
        Images in the training split.
    max_points : int
        Largest balanced subset of the test split: 10 × the smallest class count.
    """

    shape: tuple[int, int, int]
    n_classes: int
    bounds: tuple[float, float]
    train_size: int
    max_points: int

    @property
    def pixels(self) -> int:
        """Pixels per image (heatmaps are summed over channels)."""
        return self.shape[1] * self.shape[2]


DATASETS: dict[str, DatasetFacts] = {
    # MNIST test: digit 5 has 892 images.
    "mnist": DatasetFacts((1, 28, 28), 10, (0.0, 1.0), 60000, 8920),
    "fashion_mnist": DatasetFacts((1, 28, 28), 10, (0.0, 1.0), 60000, 10000),
    "cifar10": DatasetFacts((3, 32, 32), 10, (0.0, 1.0), 50000, 10000),
    # scikit-learn's digits, split by bayeslrp.data.builtin
    "digits": DatasetFacts((1, 8, 8), 10, (0.0, 1.0), 1348, 410),
    # seeded CIFAR-shaped gratings (bayeslrp.data.cifar_synthetic); 100 test images per class
    "cifar_synthetic": DatasetFacts((3, 32, 32), 10, (0.0, 1.0), 5000, 1000),
    # seeded random images; the shape is the config's (MNIST's by default)
    "synthetic": DatasetFacts((1, 28, 28), 10, (0.0, 1.0), 1000, 200),
}


@dataclass(frozen=True)
class ArchFacts:
    """What is known of a built-in architecture.

    Attributes
    ----------
    learnable_layers : tuple of int
        User-facing layer names: positions of the learnable layers in the top-level
        ``nn.Sequential`` (SPEC §2), as :func:`bayeslrp.nets.learnable_layers` reports them.
    takes_hidden, takes_channels : bool
        Whether the builder has a ``hidden`` width / a first-conv ``channels`` option.
    """

    learnable_layers: tuple[int, ...]
    takes_hidden: bool = True
    takes_channels: bool = False


# resnet20 is [0 normalise, 1 conv, 2 bn, 3 relu, 4-12 nine residual blocks, 13 pool,
# 14 flatten, 15 linear]: the stem conv, every residual block and the classifier.
ARCHS: dict[str, ArchFacts] = {
    "fc2": ArchFacts((1, 3, 5)),
    "conv": ArchFacts((0, 3, 7), takes_channels=True),
    "resnet20": ArchFacts((1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15), takes_hidden=False),
}


def dataset_facts(name: str) -> DatasetFacts | None:
    """Facts of a built-in dataset, ``None`` for any other name."""
    return DATASETS.get(name)


def learnable_layers(arch: str) -> tuple[int, ...]:
    """Learnable-layer indices of a built-in architecture."""
    return ARCHS[arch].learnable_layers


def arch_fits(arch: str, shape: tuple[int, int, int]) -> bool:
    """Whether a built-in architecture accepts images of ``shape`` ``(C, H, W)``."""
    c, h, w = shape
    if arch == "conv":
        # conv5 -> pool2 -> conv5 -> pool(2, stride 1) must leave at least one position
        return min((h - 4) // 2, (w - 4) // 2) - 5 >= 1
    if arch == "resnet20":
        return c == 3  # its normalisation layer holds CIFAR's per-channel statistics
    return True  # fc2 flattens any image


def parameter_count(arch: str, shape: tuple[int, int, int], hidden: int | None = None,
                    channels: int | None = None, n_classes: int = 10) -> int | None:
    """Learnable parameters of one sample of fc2 or conv (``None`` for fixed-width nets)."""
    c, h, w = shape
    if arch == "fc2":
        hid = 512 if hidden is None else hidden
        return (c * h * w + 1) * hid + (hid + 1) * hid + (hid + 1) * n_classes
    if arch == "conv":
        hid = 512 if hidden is None else hidden
        ch = 32 if channels is None else channels
        positions = max((h - 4) // 2 - 5, 0) * max((w - 4) // 2 - 5, 0)
        return (c * 25 + 1) * ch + (ch * 25 + 1) * hid + (hid * positions + 1) * n_classes
    return None
