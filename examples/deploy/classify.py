"""Run an edgekd artifact from Python on a board that has the TVM wheel (``pip install apache-tvm==<the
artifact's manifest.json versions.tvm>``); edgekd itself is not needed.

    python classify.py ARTIFACT_DIR [INPUT.bin] [--logits LOGITS.bin]

INPUT.bin holds raw little-endian float32 values in C order, of the shape in manifest.json's ``input.shape``
(default: the artifact's own input.bin). Prints one line per image, ``image <i>: class <k> (logit <v>)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tvm
from tvm import relax


class Model:
    """An artifact's model.so loaded into a Relax VM on the CPU; call it with a float32 array."""

    def __init__(self, artifact: Path) -> None:
        self.manifest = json.loads((artifact / "manifest.json").read_text())
        self.input_shape = tuple(self.manifest["input"]["shape"])
        library = tvm.runtime.load_module(str(artifact / self.manifest["library"]))
        self.vm = relax.VirtualMachine(library, tvm.cpu())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape != self.input_shape:
            raise ValueError(f"input shape {x.shape} is not the model's {self.input_shape}")
        result = self.vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, dtype=np.float32)))
        return (result if hasattr(result, "numpy") else result[0]).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("input", type=Path, nargs="?", help="raw float32 input (default: the artifact's)")
    parser.add_argument("--logits", type=Path, help="write the output here as raw float32")
    args = parser.parse_args(argv)
    try:
        model = Model(args.artifact)
        path = args.input or args.artifact / model.manifest["input"]["file"]
        x = np.fromfile(path, dtype="<f4")
        if x.size != np.prod(model.input_shape):
            raise ValueError(f"{path} holds {x.size} float32 values; the input shape {model.input_shape} "
                             f"needs {int(np.prod(model.input_shape))}")
        logits = model(x.reshape(model.input_shape))
    except (OSError, ValueError, KeyError, RuntimeError) as err:  # TVM raises RuntimeError and kin
        print(f"classify: {err}".splitlines()[0], file=sys.stderr)
        return 1
    rows = logits.reshape(logits.shape[0], -1) if logits.ndim == 2 else logits.reshape(1, -1)
    for i, row in enumerate(rows):
        best = int(row.argmax())
        print(f"image {i}: class {best} (logit {row[best]:.6g})")
    if args.logits:
        logits.astype("<f4").tofile(args.logits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
