"""Helpers for the compile tests: raw tensor files (small networks are in :mod:`edgekd.testing.models`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_float32(path: Path, shape: list[int]) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32).reshape(shape)
