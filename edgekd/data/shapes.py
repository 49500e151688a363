"""A generated, learnable 10-class image dataset that needs no download (the offline quick start).

Each image is a coloured shape on a noisy background; the class is the shape. Position, size, colours
and noise vary, so a small CNN needs a few epochs to learn it — but the whole set is made from a seed
in well under a second, identically on every machine.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("disk", "square", "triangle", "cross", "ring", "h-stripes", "v-stripes", "diagonal", "checker", "dots")


def generate_shapes(count: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N, size, size, 3], labels uint8 [N])``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        images[index] = _draw(int(label), rng, yy, xx, size)
    return images, labels.astype(np.uint8)


def _draw(label: int, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    radius = rng.uniform(0.18, 0.32) * size
    dy, dx = yy - cy, xx - cx
    period = rng.uniform(4, 8)
    masks = {
        0: dy**2 + dx**2 <= radius**2,
        1: (np.abs(dy) <= radius * 0.8) & (np.abs(dx) <= radius * 0.8),
        2: (dy <= radius * 0.7) & (dy >= -radius * 0.7 + 2 * np.abs(dx) * 0.9 - radius * 0.3),
        3: ((np.abs(dy) <= radius * 0.25) | (np.abs(dx) <= radius * 0.25)) & (np.maximum(abs(dy), abs(dx)) <= radius),
        4: np.abs(np.sqrt(dy**2 + dx**2) - radius * 0.75) <= radius * 0.22,
        5: (yy % period) < period / 2,
        6: (xx % period) < period / 2,
        7: ((yy + xx) % period) < period / 2,
        8: ((yy // (period / 1.5)) + (xx // (period / 1.5))) % 2 == 0,
        9: ((yy % period) < 2) & ((xx % period) < 2),
    }
    background = rng.uniform(0, 255, 3)
    foreground = (background + rng.uniform(80, 175, 3)) % 256  # always distinguishable from the background
    image = np.where(masks[label][..., None], foreground, background)
    image += rng.normal(0, 18, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
