"""Fashion-MNIST for the tests that need its images: found, or the test is skipped saying how to get it."""

from __future__ import annotations

from pathlib import Path

import pytest

from longtail.data.sources import DatasetNotFoundError, default_data_root, load_fashion_mnist


def fashion_mnist_root_or_skip() -> Path:
    """The data root holding Fashion-MNIST (Debian's package or torchvision's folder); skips the calling
    test where neither is there (`make test` installs the package when it runs as root)."""
    root = default_data_root()
    try:
        load_fashion_mnist(root, train=False)
    except DatasetNotFoundError as err:
        pytest.skip(f"Fashion-MNIST unavailable: {err}")
    return root
