"""TVM: import a PyTorch model into Relax, compile it for a target, export the library (imports TVM lazily).

Input: an eval-mode ``nn.Module`` with an example input, a TVM target dict, a C compiler executable and,
optionally, a MetaSchedule database directory whose records are applied. Output: ``model.so`` (a Relax
VM executable) for the target. Pipeline (TVM 0.27, DESIGN.md §3)::

    fold BatchNorms into their convolutions → torch.export.export → relax.frontend.torch.from_exported_program
    → DecomposeOpsForInference,
    CanonicalizeBindings, zero_pipeline [→ AttachAttrLayoutFreeBuffers] → [MetaScheduleApplyDatabase
    [→ SplitLayoutRewritePreproc → FoldConstant]] → tvm.compile → export_library

Only this module and :mod:`edgekd.compile.tuning` import ``tvm``, always inside functions, so importing
edgekd stays fast.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.errors import CompileError, ToolchainError, first_line

__all__ = ["PIPELINE_VERSION", "system_cpu", "make_target", "fold_batch_norms", "import_model", "prepare_module",
           "compile_library", "run_library"]

# What a compile makes of a network; latency models and kernel timings measured under another version are stale.
# 2: BatchNorms folded into the convolutions before export.
PIPELINE_VERSION = "2"


def system_cpu() -> str:
    """LLVM's name for this machine's CPU (what ``mcpu: host`` resolves to), e.g. ``znver4``."""
    import tvm  # registers the target.* global functions
    import tvm_ffi

    del tvm
    return str(tvm_ffi.get_global_func("target.llvm_get_system_cpu")())


def make_target(target: dict[str, Any]) -> Any:
    """A ``tvm.target.Target`` from the profile's dict (TVM 0.27 refuses the string form).

    Raises:
        CompileError: TVM rejected the dict (e.g. an unknown ``mcpu``).
    """
    import tvm

    try:
        return tvm.target.Target(dict(target))
    except Exception as err:  # tvm raises its own error types
        raise CompileError(f"TVM rejected target {target}: {_error_line(err)}") from None


def fold_batch_norms(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]) -> nn.Module:
    """A copy of the eval-mode ``model`` with every BatchNorm folded into the convolution or linear layer that
    alone feeds it (``torch.fx.experimental.optimization.fuse``), as deployment runtimes do. Why: each decomposed
    BatchNorm leaves constant expressions that TVM's FoldConstant builds a kernel for, one by one (half the
    compile time of a small CNN), and four elementwise ops per output in every convolution's kernel (untuned,
    ~20% of its latency). A network torch.fx cannot trace, or whose folded output strays from its own, is
    returned unchanged."""
    from torch.fx.experimental.optimization import fuse
    from torch.utils._pytree import tree_leaves

    examples = example if isinstance(example, tuple) else (example,)
    model = model.eval()
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folded = fuse(model)
        with torch.no_grad():
            pairs = list(zip(tree_leaves(model(*examples)), tree_leaves(folded(*examples)), strict=True))
    except Exception:  # torch.fx raises many types (TraceError, NotImplementedError, ...) for untraceable code
        return model
    for ours, theirs in pairs:
        if not isinstance(ours, torch.Tensor) or ours.shape != theirs.shape:
            return model
        scale = float(ours.abs().max()) if ours.numel() else 0.0
        if not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * max(1.0, scale)):
            return model
    return folded


def import_model(model: nn.Module | torch.export.ExportedProgram, example: torch.Tensor | tuple[torch.Tensor, ...],
                 fold: bool = True) -> Any:
    """torch.export the model (``example``: its input, or a tuple of inputs), its BatchNorms folded
    (:func:`fold_batch_norms`; a program from a ``.pt2`` is used as it is), and translate it to a Relax IRModule
    (weights bound as constants).

    Raises:
        CompileError: torch.export failed, or TVM's frontend lacks an operator (named in the message).
    """
    from tvm.relax.frontend.torch import from_exported_program

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = model if isinstance(model, torch.export.ExportedProgram) else torch.export.export(
                fold_batch_norms(model, example) if fold else model.eval(),
                example if isinstance(example, tuple) else (example,))
    except Exception as err:  # torch.export raises many types
        raise CompileError(f"torch.export could not trace the model: {_error_line(err)}") from None
    try:
        return from_exported_program(program, keep_params_as_input=False)
    except Exception as err:  # the frontend signals unsupported ops with AssertionError
        operators = _unsupported_operators(str(err))
        if operators:
            raise CompileError(
                f"TVM's PyTorch frontend cannot import operator(s) {', '.join(operators)}; replace them in the "
                f"model or export it to ONNX instead"
            ) from None
        raise CompileError(f"TVM's PyTorch frontend failed: {_error_line(err)}") from None


def _unsupported_operators(message: str) -> list[str]:
    match = re.search(r"Unsupported function types? \[([^\]]*)\]", message)
    if not match:
        return []
    return [name.strip().strip("'\"") for name in match.group(1).split(",") if name.strip()]


def prepare_module(mod: Any, target: Any, weight_prepack: bool = False) -> Any:
    """The pre-tuning passes (inference decomposition + legalization); tuning tasks come from this module.

    ``weight_prepack`` marks the model's constant weights as layout-free, so MetaSchedule may choose a
    blocked weight layout per convolution (its schedules then read ``*_prepacked`` weights); the layout
    transform is folded into the constants at compile time (:func:`compile_library`), so the library's
    interface is unchanged. Only worth it when tuning: untuned schedules never rewrite layouts.
    """
    import tvm
    from tvm import relax

    passes = [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
              relax.get_pipeline("zero")]
    if weight_prepack:
        passes.append(relax.transform.AttachAttrLayoutFreeBuffers())
    with target:
        return tvm.transform.Sequential(passes)(mod)


def compile_library(mod: Any, target: Any, output: Path, compiler: str | None,
                    database: Any = None, weight_prepack: bool = False) -> Path:
    """Compile a prepared module and export it as a shared library.

    Args:
        mod: output of :func:`prepare_module`.
        target: a ``tvm.target.Target``.
        output: the ``.so`` to write.
        compiler: one C compiler executable (cross or host); ``None`` uses TVM's default (host g++).
        database: a MetaSchedule database (:func:`edgekd.compile.tuning.open_database`) whose best records are
            applied.
        weight_prepack: the module was prepared with ``weight_prepack``: split each tuned schedule's weight
            layout rewrite out and fold it into the constant weights.

    Raises:
        CompileError: TVM failed to compile. ToolchainError: the C compiler failed to link.
    """
    import tvm
    from tvm import relax
    from tvm.support import cc

    try:
        if database is not None:
            with target, database, tvm.transform.PassContext(opt_level=3):
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
                if weight_prepack:
                    mod = relax.transform.SplitLayoutRewritePreproc()(mod)
                    mod = relax.transform.FoldConstant()(mod)
        executable = tvm.compile(mod, target)
    except Exception as err:  # tvm raises its own error types
        raise CompileError(f"TVM could not compile the model for {target}: {_error_line(err)}") from None
    try:
        fcompile = cc.cross_compiler(compiler) if compiler else None
        executable.export_library(str(output), fcompile=fcompile)
    except Exception as err:  # the compiler's stderr comes back inside a RuntimeError
        raise ToolchainError(f"linking {output.name} with {compiler or 'the default compiler'} failed: "
                             f"{_error_line(err)}") from None
    return output


def run_library(library: Path, example: np.ndarray) -> np.ndarray:
    """Run a host-architecture ``model.so`` on one input with the Relax VM; returns the first output."""
    import tvm
    from tvm import relax

    machine = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    result = machine["main"](tvm.runtime.tensor(np.ascontiguousarray(example)))
    first = result if hasattr(result, "numpy") else result[0]
    return first.numpy()


def _error_line(err: BaseException) -> str:
    # TVM errors put the useful line last (after the traceback); others put it first.
    lines = str(err).splitlines()
    useful = next((line.strip() for line in reversed(lines) if "Error" in line and ":" in line), None)
    return (useful or first_line(err))[:400]
