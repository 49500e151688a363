import numpy as np
import pytest
import torch
from support import require

from edgekd.config.recipe import DataConfig
from edgekd.data import build_loaders
from edgekd.data.shapes import generate_shapes
from edgekd.errors import DataError


def test_full_npz_holds_out_data_batch_5_as_test(shared_data):
    require((shared_data / "cifar10-train50k.npz").is_file(), "cifar10-train50k.npz in ../shared/data")
    loaders = build_loaders(DataConfig(dataset="cifar10", root=str(shared_data), val_size=5000))
    assert loaders.sizes == {"train": 35000, "val": 5000, "test": 10000}
    with np.load(shared_data / "cifar10-train50k.npz") as data:
        expected_first_test = data["labels"][40000:40010]
    assert loaders.test.dataset.labels[:10].tolist() == expected_first_test.tolist()


def test_mini_npz_and_validation_split_is_disjoint(tmp_path, shared_data):
    (tmp_path / "cifar10-mini.npz").symlink_to(shared_data / "cifar10-mini.npz")
    loaders = build_loaders(DataConfig(dataset="cifar10", root=str(tmp_path), val_size=500, batch_size=50))
    assert loaders.sizes == {"train": 4500, "val": 500, "test": 1000}
    train = {bytes(x.numpy()) for x in loaders.train.dataset.images[:4500]}
    val = {bytes(x.numpy()) for x in loaders.val.dataset.images}
    assert not train & val
    images, labels = next(iter(loaders.train))
    assert images.shape == (50, 3, 32, 32) and abs(images.mean().item()) < 0.5  # normalised


def _epoch_labels(loaders) -> list[int]:
    return torch.cat([labels for _, labels in loaders.train]).tolist()


def test_loader_order_is_seeded():
    """The shuffle order comes from build_loaders' seed alone: the global torch RNG is deliberately put in a
    different state before each epoch, and a different seed must give a different order."""
    cfg = DataConfig(dataset="shapes", val_size=50, train_subset=200, test_subset=50, batch_size=20, workers=0,
                     augment=False)
    first, again, other = (build_loaders(cfg, seed=seed) for seed in (3, 3, 4))
    torch.manual_seed(100)
    a = _epoch_labels(first)
    torch.manual_seed(200)
    b = _epoch_labels(again)
    torch.manual_seed(100)
    c = _epoch_labels(other)
    assert sorted(a) != a  # shuffled at all
    assert a == b
    assert a != c
    second_epoch = _epoch_labels(first)
    assert second_epoch != a  # each epoch draws a new permutation from the loader's own generator
    torch.manual_seed(300)
    assert _epoch_labels(again) == second_epoch


def test_shapes_are_deterministic_and_balanced():
    images, labels = generate_shapes(200, seed=1)
    again, _ = generate_shapes(200, seed=1)
    assert np.array_equal(images, again)
    assert np.bincount(labels, minlength=10).tolist() == [20] * 10
    assert images.std() > 30  # not blank


def test_missing_root_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no cifar10 data found"):
        build_loaders(DataConfig(dataset="cifar10", root=str(tmp_path / "nope")))


def test_imagefolder(tmp_path):
    from PIL import Image

    images, labels = generate_shapes(40, seed=2)
    for split, rows in (("train", range(0, 30)), ("val", range(30, 40))):
        for index in rows:
            folder = tmp_path / split / f"class{labels[index]}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index]).save(folder / f"{index}.png")
    loaders = build_loaders(DataConfig(dataset="imagefolder", root=str(tmp_path), val_size=5, batch_size=5))
    assert loaders.sizes == {"train": 25, "val": 5, "test": 10}
    assert loaders.num_classes == 10
