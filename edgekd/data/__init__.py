"""Datasets and loaders: recipe ``data`` section in, train/val/test DataLoaders out.

Sources (``data.dataset``):

- ``cifar10``: the offline npz files (``cifar10-train50k.npz``: train = images 0..39,999 minus the
  validation split, test = 40,000..49,999 = ``data_batch_5``; or ``cifar10-mini.npz``), else
  torchvision's ``cifar-10-batches-py`` under the root (downloaded only when ``data.download``).
- ``cifar100``: torchvision's format (download with ``data.download``).
- ``imagefolder``: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` (or ``test``).
- ``shapes``: ten classes of generated shapes, needing no files at all (the offline quick start).

A validation split (``data.val_size`` images, fixed permutation) is taken off the training images for
model selection; the test split is only reported.
"""

from edgekd.data.loaders import Loaders, build_loaders, resolve_data_root

__all__ = ["Loaders", "build_loaders", "resolve_data_root"]
