"""What a compile fuses into each conv / linear op's kernel: the elementwise ops that alone consume its output.

Input: a network and its input shape. Output: per op (module name), its epilogue — the activations and residual
adds after it (BatchNorm is folded into the op's weights and bias, so it is not one): ``relu6`` / ``relu``, and
``add`` (the op's branch is the left operand) or ``radd`` (the right: ``x + branch``, as MobileNetV2's and most
residual blocks write it), ``add_input`` / ``radd_input`` when the residual is the op's own input (the kernel
then reads one buffer for both). TVM's FuseOps puts a conv and the elementwise chain that alone consumes it in one
kernel (measured on CIFAR MobileNetV2: ``conv2d_add_tir_clip`` for conv+BN+ReLU6, ``conv2d_add`` for a projection
without activation, ``conv2d_add_add`` for a projection with its residual), and a kernel timed apart from its
network must be that kernel: the same loop nest, and in tuned mode the same workload, so the database's schedule
for the one is the schedule for the other. A chain stops at an output with more than one consumer (the compile
cannot fuse past it) and at any op not listed here.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["epilogues"]

_CONVS = {"aten.conv2d.default", "aten.linear.default"}
_NORMS = {"aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default"}


def _activation(node: torch.fx.Node) -> str | None:
    target = str(node.target)
    if target in {"aten.relu.default", "aten.relu_.default"}:
        return "relu"
    if target in {"aten.hardtanh.default", "aten.hardtanh_.default"} and tuple(node.args[1:3]) == (0.0, 6.0):
        return "relu6"
    return None


def _single_user(node: torch.fx.Node) -> torch.fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _past_norm(node: torch.fx.Node) -> torch.fx.Node:
    """The value a folded BatchNorm after ``node`` stands for (``node`` when none follows it alone)."""
    user = _single_user(node)
    if user is None or str(user.target) not in _NORMS:
        return node
    if str(user.target) == "aten.batch_norm.default":
        return user
    outputs = [u for u in user.users if str(u.target) == "<built-in function getitem>" and u.args[1] == 0]
    return outputs[0] if len(outputs) == 1 else node


def _chain(node: torch.fx.Node) -> tuple[str, ...]:
    ops: list[str] = []
    value = _past_norm(node)
    while (user := _single_user(value)) is not None:
        name = _activation(user)
        if name is None and str(user.target) == "aten.add.Tensor" and len(user.args) == 2:
            name = "add" if user.args[0] is value else "radd"
            other = user.args[1] if name == "add" else user.args[0]
            name += "_input" if other is node.args[0] else ""
        if name is None:
            break
        ops.append(name)
        value = user
    return tuple(ops)


def epilogues(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[str, ...]]:
    """Each conv / linear module's epilogue (module name → ops), from the network's exported graph; a network that
    torch.export cannot trace gets no entries (its ops are measured with the default ``relu6`` epilogue)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model.eval(), (torch.zeros(input_shape),))
    except Exception:  # torch.export raises many types; the compile reports it with its own message
        return {}
    found: dict[str, tuple[str, ...]] = {}
    for node in program.graph.nodes:
        if node.op != "call_function" or str(node.target) not in _CONVS:
            continue
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            found[list(stack.values())[-1][0]] = _chain(node)
    return found
