"""Fixtures of the detection tests: the toy detection samples (tests/helpers/toy_detection.py), one thread."""

from __future__ import annotations

import pytest
import torch

from helpers.toy_detection import toy_detection_samples


@pytest.fixture
def toy_samples():
    return toy_detection_samples()


@pytest.fixture(autouse=True)
def _one_thread():
    """Small detector steps run ~50x slower with 2 OpenMP threads on a loaded 2-core machine (threads
    spin waiting for each other); one thread keeps these tests fast and their timing stable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
