"""Build train/val/test loaders from a recipe's ``data`` section (see :mod:`edgekd.data`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edgekd.config.recipe import DataConfig
from edgekd.errors import DataError
from edgekd.paths import cache_dir

SPLIT_SEED = 20201  # the validation split is the same for every run seed, so runs are comparable
TEST_START = 40000  # cifar10-train50k.npz: images 40000..49999 (data_batch_5) are the held-out test split

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "shapes": ((0.5, 0.5, 0.5), (0.29, 0.29, 0.29)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader | None
    test: DataLoader
    num_classes: int
    input_shape: tuple[int, int, int, int]  # batch 1, C, H, W
    sizes: dict[str, int] = field(default_factory=dict)
    source: str = ""


class ArrayImages(Dataset):
    """uint8 HWC images in memory; augmentation (pad-4 random crop, flip) and normalisation in torch."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std, augment: bool) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # N, C, H, W uint8
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.images[index].float().div_(255)
        if self.augment:
            image = _random_crop_flip(image)
        return (image - self.mean) / self.std, self.labels[index]


def _random_crop_flip(image: torch.Tensor, pad: int = 4) -> torch.Tensor:
    _, height, width = image.shape
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    top, left = torch.randint(0, 2 * pad + 1, (2,)).tolist()
    image = padded[:, top : top + height, left : left + width]
    return image.flip(2) if torch.rand(()) < 0.5 else image


def resolve_data_root(cfg: DataConfig) -> Path | None:
    """The root the recipe resolved to (file → EDGEKD_DATA → --data → --set), or torchvision's cache."""
    if cfg.root:
        return Path(os.path.expanduser(cfg.root))
    if cfg.dataset == "shapes":
        return None
    return cache_dir() / "data"


def build_loaders(cfg: DataConfig, seed: int = 0, distributed: bool = False) -> Loaders:
    """Make the three loaders; raises DataError naming the root and what was looked for."""
    train_x, train_y, test_x, test_y, num_classes, source = _load_arrays(cfg, seed)
    train_x, train_y, val_x, val_y = _split_validation(train_x, train_y, cfg.val_size)
    if cfg.train_subset:
        train_x, train_y = train_x[: cfg.train_subset], train_y[: cfg.train_subset]
    if cfg.test_subset:
        test_x, test_y = test_x[: cfg.test_subset], test_y[: cfg.test_subset]
    mean, std = STATS.get(cfg.dataset, STATS["imagefolder"])
    train_set = ArrayImages(train_x, train_y, mean, std, cfg.augment)
    val_set = ArrayImages(val_x, val_y, mean, std, False) if len(val_y) else None
    test_set = ArrayImages(test_x, test_y, mean, std, False)
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if distributed:
        sampler = torch.utils.data.distributed.DistributedSampler(train_set, seed=seed, shuffle=True)
    train = DataLoader(train_set, cfg.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True,
                       num_workers=cfg.workers, generator=generator, persistent_workers=False,
                       pin_memory=torch.cuda.is_available())  # page-locked: the step's non_blocking copy is async
    evaluate = {"batch_size": max(cfg.batch_size, 256), "num_workers": 0}
    height, width = train_x.shape[1:3]
    return Loaders(
        train=train,
        val=DataLoader(val_set, **evaluate) if val_set else None,
        test=DataLoader(test_set, **evaluate),
        num_classes=num_classes,
        input_shape=(1, 3, height, width),
        sizes={"train": len(train_set), "val": len(val_set) if val_set else 0, "test": len(test_set)},
        source=source,
    )


def _split_validation(images: np.ndarray, labels: np.ndarray, val_size: int):
    if val_size >= len(labels):
        raise DataError(f"data.val_size={val_size}: must be smaller than the {len(labels)} training images")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    val, train = order[:val_size], np.sort(order[val_size:])
    return images[train], labels[train], images[val], labels[val]


def _load_arrays(cfg: DataConfig, seed: int):
    if cfg.dataset == "shapes":
        from edgekd.data.shapes import generate_shapes

        train_count = (cfg.train_subset or 4000) + cfg.val_size
        train_x, train_y = generate_shapes(train_count, seed=1000 + 0)
        test_x, test_y = generate_shapes(cfg.test_subset or 1000, seed=2000)
        return train_x, train_y, test_x, test_y, 10, "generated shapes (edgekd.data.shapes)"
    root = resolve_data_root(cfg)
    if cfg.dataset == "cifar10":
        found = _cifar10_npz(root)
        if found is not None:
            return found
        return _torchvision_cifar(cfg, root, "CIFAR10", 10)
    if cfg.dataset == "cifar100":
        return _torchvision_cifar(cfg, root, "CIFAR100", 100)
    return _imagefolder(cfg, root)


def _cifar10_npz(root: Path):
    full, mini = root / "cifar10-train50k.npz", root / "cifar10-mini.npz"
    if full.is_file():
        with np.load(full) as data:
            images, labels = data["images"], data["labels"]
        return (images[:TEST_START], labels[:TEST_START], images[TEST_START:], labels[TEST_START:], 10,
                f"{full} (train 0..39999, test 40000..49999)")
    if mini.is_file():
        with np.load(mini) as data:
            return (data["train_images"], data["train_labels"], data["test_images"], data["test_labels"], 10,
                    f"{mini} (mini: 5000 train, 1000 test)")
    return None


def _torchvision_cifar(cfg: DataConfig, root: Path, cls_name: str, num_classes: int):
    import torchvision

    folder = "cifar-10-batches-py" if cls_name == "CIFAR10" else "cifar-100-python"
    if not (root / folder).is_dir() and not cfg.download:
        expected = "cifar10-train50k.npz, cifar10-mini.npz or " if cls_name == "CIFAR10" else ""
        raise DataError(f"data.root={str(root)!r}: no {cfg.dataset} data found (looked for {expected}{folder}/); "
                        f"pass --data DIR, set EDGEKD_DATA, or --set data.download=true when online")
    dataset_cls = getattr(torchvision.datasets, cls_name)
    try:
        train = dataset_cls(str(root), train=True, download=cfg.download)
        test = dataset_cls(str(root), train=False, download=cfg.download)
    except Exception as err:  # network or archive errors from torchvision
        raise DataError(f"data.root={str(root)!r}: could not read {cls_name}: {err}") from None
    return (train.data, np.asarray(train.targets), test.data, np.asarray(test.targets), num_classes,
            f"{root / folder} (torchvision {cls_name})")


def _imagefolder(cfg: DataConfig, root: Path):
    from PIL import Image

    train_dir = root / "train"
    test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"data.root={str(root)!r}: imagefolder needs train/ and val/ (or test/) class folders")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())

    def read(split: Path):
        images, labels = [], []
        for label, name in enumerate(classes):
            for file in sorted((split / name).glob("*")):
                image = Image.open(file).convert("RGB").resize((cfg.image_size, cfg.image_size))
                images.append(np.asarray(image, dtype=np.uint8))
                labels.append(label)
        return np.stack(images), np.asarray(labels)

    train_x, train_y = read(train_dir)
    test_x, test_y = read(test_dir)
    return train_x, train_y, test_x, test_y, cfg.num_classes or len(classes), f"{root} (imagefolder)"
