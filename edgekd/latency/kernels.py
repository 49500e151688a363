"""The fused kernels of one conv/linear op at given channel widths, built for a target and ready to time.

Input: an :class:`OpShape` — an op's geometry (kind, kernel, stride, padding, input size) with its input and
output channel counts — and a target. Output: :class:`Kernel` s, TVM's fused TIR functions of the op as the
network's compile would make them (conv + BatchNorm + activation in one loop nest), each exported as a shared
library that ``edgekd-timer`` loads on the board (:class:`~edgekd.device.tuning_runner.Candidate`).

Why kernels and not whole networks: a network's latency on TVM is the sum of its fused kernels (measured here,
CIFAR MobileNetV2 untuned: Σ kernels 89.4 ms, runner p50 89.5 ms), and a kernel builds in ~0.3 s and times in
~0.1 s where a whole network compiles in ~20 s. Tuned mode applies the target database's best schedule to each
kernel (the one a compile would apply); a kernel without a record is built untuned and counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.structure.groups import OpInfo

__all__ = ["OpShape", "Kernel", "op_shape", "default_epilogue", "family_key", "op_module", "op_tasks",
           "network_tasks", "build_kernels", "build_tasks"]


@dataclass(frozen=True)
class OpShape:
    """One op's geometry at one width: what decides its fused kernels. ``groups`` is the conv's group count for a
    grouped conv (its channels per group change with the width) and 0 for a depthwise conv (groups = channels).
    ``epilogue``: the elementwise ops fused after it (:mod:`edgekd.latency.fusion`; BatchNorm is folded)."""

    kind: str  # "conv", "dwconv", "gconv", "linear"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    in_hw: tuple[int, int]
    a_in: int
    a_out: int
    epilogue: tuple[str, ...] = ("relu6",)

    @property
    def family(self) -> str:
        return family_key(self)

    @property
    def diagonal(self) -> bool:
        """Its input width is its output width: a depthwise conv, or an op whose residual is its own input."""
        return self.kind == "dwconv" or any(name.endswith("_input") for name in self.epilogue)

    def at(self, a_in: int, a_out: int) -> OpShape:
        """The same op at other widths (a :attr:`diagonal` op's input is its output)."""
        if self.diagonal:
            a_in = a_out
        return OpShape(self.kind, self.kernel, self.stride, self.padding, self.dilation, self.groups, self.in_hw,
                       int(a_in), int(a_out), self.epilogue)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, tuple | list) else (int(value), int(value))


def op_shape(op: OpInfo, a_in: int | None = None, a_out: int | None = None,
             epilogue: tuple[str, ...] | None = None) -> OpShape:
    """The :class:`OpShape` of a traced op, at its full widths unless ``a_in`` / ``a_out`` are given; ``epilogue``
    as :func:`edgekd.latency.fusion.epilogues` found it (None: a conv's ``relu6``, nothing after a linear)."""
    module = op.module
    if epilogue is None:
        epilogue = default_epilogue(op.kind)
    if op.kind == "linear":
        shape = OpShape("linear", (1, 1), (1, 1), (0, 0), (1, 1), 1, (1, 1), op.in_channels, op.out_channels,
                        tuple(epilogue))
    else:
        padding = module.padding
        if isinstance(padding, str):  # "same"/"valid": the conv's own rule, recorded as the pad it means
            padding = tuple((k - 1) // 2 * d if padding == "same" else 0
                            for k, d in zip(_pair(module.kernel_size), _pair(module.dilation), strict=True))
        groups = 0 if op.kind == "dwconv" else int(module.groups)
        shape = OpShape(op.kind, _pair(module.kernel_size), _pair(module.stride), _pair(padding),
                        _pair(module.dilation), groups, tuple(op.in_hw), op.in_channels, op.out_channels,
                        tuple(epilogue))
    return shape.at(shape.a_in if a_in is None else a_in, shape.a_out if a_out is None else a_out)


def default_epilogue(kind: str) -> tuple[str, ...]:
    """What an op is measured with when its network's fusion is not known: a conv's ReLU6, nothing after a linear."""
    return () if kind == "linear" else ("relu6",)


def family_key(shape: OpShape) -> str:
    """Ops whose kernels differ only in channel counts share a family (and one fitted latency function); an
    epilogue other than the default (a conv's ``relu6``, a linear's nothing) is part of the key."""
    tail = "" if shape.epilogue == default_epilogue(shape.kind) else "-" + "+".join(shape.epilogue or ("none",))
    if shape.kind == "linear":
        return "linear" + tail
    k, s, p, d = shape.kernel, shape.stride, shape.padding, shape.dilation
    return (f"{shape.kind}{'' if shape.kind != 'gconv' else shape.groups}-k{k[0]}x{k[1]}-s{s[0]}x{s[1]}"
            f"-p{p[0]}x{p[1]}-d{d[0]}x{d[1]}-{shape.in_hw[0]}x{shape.in_hw[1]}{tail}")


class _FusedOp(nn.Module):
    """One op and its epilogue, as the network computes them: ``forward(x, residual)``, the residual for an add.
    Written so that torch.fx traces it: the compile's BatchNorm folding (``fold_batch_norms``) needs that, or
    the kernel keeps the BatchNorm's four elementwise ops the network's kernel does not have."""

    def __init__(self, op: nn.Module, norm: nn.Module | None, epilogue: tuple[str, ...]) -> None:
        super().__init__()
        self.op, self.norm, self.epilogue = op, norm, epilogue

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        y = self.op(x) if self.norm is None else self.norm(self.op(x))
        for name in self.epilogue:
            if name == "relu6":
                y = nn.functional.relu6(y)
            elif name == "relu":
                y = torch.relu(y)
            elif name == "add":
                y = y + residual
            elif name == "radd":  # the residual is the left operand, as in ``x + branch``
                y = residual + y
            elif name == "add_input":  # the residual is the op's own input
                y = y + x
            else:  # "radd_input"
                y = x + y
        return y


def _out_hw(shape: OpShape) -> tuple[int, int]:
    return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1  # type: ignore[return-value]
                 for size, k, s, p, d in zip(shape.in_hw, shape.kernel, shape.stride, shape.padding, shape.dilation,
                                             strict=True))


def op_module(shape: OpShape) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A network of just this op as the compiled network runs it — conv, BatchNorm and its epilogue: the compile
    folds the BatchNorm into the convolution's weights and bias and TVM fuses the rest into one kernel — and its
    example inputs (the op's input, then one residual per add). Random BatchNorm statistics give the folded
    convolution its bias, as a trained network's do."""
    adds = sum(name in ("add", "radd") for name in shape.epilogue)  # the *_input adds read the op's input
    if adds > 1:
        raise ValueError(f"an op with {adds} residual adds fused after it is not supported: {shape.epilogue}")
    if shape.kind == "linear":
        module = _FusedOp(nn.Linear(shape.a_in, shape.a_out), None, shape.epilogue).eval()
        return module, (torch.zeros(1, shape.a_in), *(torch.zeros(1, shape.a_out) for _ in range(adds)))
    groups = shape.a_out if shape.kind == "dwconv" else shape.groups
    conv = nn.Conv2d(shape.a_in, shape.a_out, shape.kernel, shape.stride, shape.padding, shape.dilation,
                     groups=groups, bias=False)
    bn = nn.BatchNorm2d(shape.a_out)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    residual = (1, shape.a_out, *_out_hw(shape))
    return (_FusedOp(conv, bn, shape.epilogue).eval(),
            (torch.zeros(1, shape.a_in, *shape.in_hw), *(torch.zeros(residual) for _ in range(adds))))


@dataclass(frozen=True)
class Kernel:
    """One fused kernel of an op: its library, arguments, how often the op calls it, and its content key."""

    name: str
    library: Path
    args: tuple[tuple[str, tuple[int, ...]], ...]
    weight: int
    key: str
    tuned: bool


def _args(prim_module: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    from tvm.s_tir import meta_schedule as ms

    args = []
    for info in ms.arg_info.ArgInfo.from_prim_func(prim_module["main"]):
        _kind, dtype, dims = info.as_json()
        args.append((str(dtype), tuple(int(d) for d in dims)))
    return tuple(args)


def _scheduled(task_mod: Any, target: Any, database: Any) -> tuple[Any, bool]:
    """The task's kernel with the database's best schedule applied (tuned) or as legalized (untuned)."""
    if database is None:
        return task_mod, False
    schedule = database.query_schedule(task_mod, target, workload_name="main")
    if schedule is None:
        return task_mod, False
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    # as MetaSchedule measured it: the weight layout rewrite is folded into constants at compile time
    return RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(schedule.mod), True


def kernel_key(prim_module: Any, target: Any) -> str:
    import tvm_ffi

    text = json.dumps([f"{tvm_ffi.structural_hash(prim_module) & (2**64 - 1):016x}", str(target)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def op_tasks(shape: OpShape, target: Any, tuned: bool) -> list[Any]:
    """MetaSchedule's extracted tasks of ``shape``'s op as a compile prepares them (``tuned``: with the weight
    layout rewrite a tuned compile lets MetaSchedule pick)."""
    module, examples = op_module(shape)
    return network_tasks(module, examples, target, tuned)


def network_tasks(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], target: Any, tuned: bool
                  ) -> list[Any]:
    """MetaSchedule's extracted tasks of a whole network as its compile prepares them (see :func:`op_tasks`): its
    own fused kernels, residual adds and activations included, each with how often the network calls it."""
    from tvm.s_tir import meta_schedule as ms

    from edgekd.compile.build import import_model, prepare_module

    mod = prepare_module(import_model(model, example), target, weight_prepack=tuned)
    return list(ms.relax_integration.extract_tasks(mod, target))


def build_kernels(shape: OpShape, target: Any, compiler: str | None, out_dir: Path,
                  database: Any = None) -> list[Kernel]:
    """Build the fused kernels of ``shape`` for ``target`` into ``out_dir`` (one ``.so`` each, linked with the
    target's ``compiler``); with ``database`` (a MetaSchedule database) the tuned schedules are applied.

    Raises:
        CompileError: TVM could not import or build the op.
    """
    from edgekd.errors import CompileError, first_line

    try:
        tasks = op_tasks(shape, target, tuned=database is not None)
    except CompileError:
        raise
    except Exception as err:  # tvm raises its own error types
        raise CompileError(f"TVM could not import the op {shape.family} at {shape.a_in}→{shape.a_out} channels: "
                           f"{first_line(err)}") from None
    return build_tasks(tasks, target, compiler, out_dir, database, f"{shape.family} at {shape.a_in}→{shape.a_out} "
                       "channels")


def build_tasks(tasks: list[Any], target: Any, compiler: str | None, out_dir: Path, database: Any, what: str
                ) -> list[Kernel]:
    """Build extracted tasks' kernels (:func:`build_kernels`; ``what`` names them in an error).

    Raises:
        CompileError: TVM could not build one.
    """
    import tvm
    from tvm.support import cc

    from edgekd.errors import CompileError, first_line

    kernels = []
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for index, task in enumerate(tasks):
            prim, tuned = _scheduled(task.dispatched[0], target, database)
            key = kernel_key(prim, target)
            library = out_dir / f"{key}.so"
            if not library.is_file():
                partial = out_dir / f".{key}.so"
                tvm.tirx.build(prim, target=target).export_library(
                    str(partial), fcompile=cc.cross_compiler(compiler) if compiler else None)
                partial.replace(library)
            kernels.append(Kernel(f"{task.task_name}#{index}", library, _args(prim), int(task.weight), key, tuned))
    except CompileError:
        raise
    except Exception as err:  # tvm raises its own error types
        raise CompileError(f"TVM could not build the kernels of {what}: {first_line(err)}") from None
    return kernels

