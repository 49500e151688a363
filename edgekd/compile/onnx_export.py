"""Export the same model to ONNX (the ONNX Runtime baseline), beside the TVM artifact.

Input: an eval-mode ``nn.Module`` and an example input. Output: a self-contained ``model.onnx`` (opset 18,
weights inline, input ``x``, output ``y``), written through the torch.export-based exporter.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from edgekd.errors import CompileError, first_line

__all__ = ["export_onnx", "ONNX_OPSET"]

ONNX_OPSET = 18


def export_onnx(model: nn.Module | torch.export.ExportedProgram, example: torch.Tensor, path: Path) -> Path:
    """Write ``model`` as ONNX to ``path`` (exporter chatter is silenced).

    Raises:
        CompileError: the exporter rejected the model (its message's first line is quoted).
    """
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["y"],
                              dynamo=True, external_data=False, opset_version=ONNX_OPSET)
    except Exception as err:  # the exporter raises many types
        raise CompileError(f"ONNX export failed: {first_line(err)}") from None
    return path
