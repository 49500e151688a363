"""Move cifar10-train50k.npz (141 MB) through an upload limit: lossless delta+xz parts (~51 MB per half), and back.

    python3 scripts/pack_cifar.py pack ../shared/data/cifar10-train50k.npz PARTS_DIR [--parts 2]
    python3 scripts/pack_cifar.py unpack PARTS_DIR DATA_ROOT      # writes DATA_ROOT/cifar10-train50k.npz

``unpack`` checks the images' SHA-256 recorded by ``pack`` before it writes anything. Used to carry the data to
the borrowed GPU machine (64 MiB per call; docs/benchmarks.md, "GPU training step").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
from pathlib import Path

import numpy as np

FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 3}, {"id": lzma.FILTER_LZMA2, "preset": 9}]  # HWC: delta per channel


def pack(npz: Path, out: Path, parts: int) -> None:
    with np.load(npz) as data:
        images, labels = data["images"], data["labels"]
    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(labels), parts + 1).astype(int)
    for index, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        (out / f"part{index}.xz").write_bytes(lzma.compress(images[start:stop].tobytes(), lzma.FORMAT_XZ,
                                                            filters=FILTERS))
    np.save(out / "labels.npy", labels)
    manifest = {"parts": parts, "shape": list(images.shape), "sha256": hashlib.sha256(images.tobytes()).hexdigest()}
    (out / "manifest.json").write_text(json.dumps(manifest) + "\n")
    print(f"{parts} parts in {out}: {sum(p.stat().st_size for p in out.glob('part*.xz')) / 1e6:.1f} MB")


def unpack(parts_dir: Path, root: Path) -> None:
    manifest = json.loads((parts_dir / "manifest.json").read_text())
    raw = b"".join(lzma.decompress((parts_dir / f"part{i}.xz").read_bytes()) for i in range(manifest["parts"]))
    if hashlib.sha256(raw).hexdigest() != manifest["sha256"]:
        raise SystemExit(f"{parts_dir}: the images' SHA-256 does not match manifest.json; nothing written")
    images = np.frombuffer(raw, np.uint8).reshape(manifest["shape"])
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "cifar10-train50k.npz", images=images, labels=np.load(parts_dir / "labels.npy"))
    print(f"{root / 'cifar10-train50k.npz'}: {len(images)} images, SHA-256 checked")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("npz", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--parts", type=int, default=2)
    u = sub.add_parser("unpack")
    u.add_argument("parts_dir", type=Path)
    u.add_argument("root", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.npz, args.out, args.parts)
    else:
        unpack(args.parts_dir, args.root)


if __name__ == "__main__":
    main()
