"""Which dataset a data directory holds, recognised from its contents (for ``compress --model`` without a
recipe): the CIFAR-10 files edgekd reads, CIFAR-100's torchvision folder, or an ImageFolder tree."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import DataError

__all__ = ["detect_dataset", "first_image_size"]

CIFAR10_MARKERS = ("cifar10-train50k.npz", "cifar10-mini.npz", "cifar-10-batches-py")
CIFAR100_MARKERS = ("cifar-100-python",)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm"}


def detect_dataset(root: str | Path) -> str:
    """``cifar10``, ``cifar100`` or ``imagefolder``; a DataError names what was looked for."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"--data {root}: no such directory")
    if any((root / marker).exists() for marker in CIFAR10_MARKERS):
        return "cifar10"
    if any((root / marker).exists() for marker in CIFAR100_MARKERS):
        return "cifar100"
    if (root / "train").is_dir():
        return "imagefolder"
    raise DataError(f"--data {root}: cannot tell the dataset (looked for {', '.join(CIFAR10_MARKERS)}, "
                    f"{CIFAR100_MARKERS[0]}/ or an ImageFolder train/ folder); pass --dataset")


def first_image_size(root: str | Path) -> int | None:
    """The height of the first image of an ImageFolder's ``train/`` (None when there is none)."""
    from PIL import Image

    for path in sorted((Path(root) / "train").glob("*/*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            with Image.open(path) as image:
                return image.size[1]
    return None
