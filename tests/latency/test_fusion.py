"""Kernels timed apart from their network are the network's kernels: each conv is built with the elementwise ops
its network fuses after it (ReLU6, nothing, a residual add), so in tuned mode the database's record for a lattice
point is the record a compile of any network with that op at those widths applies."""

from __future__ import annotations

import torch

from edgekd.compile.build import make_target
from edgekd.latency.fusion import epilogues
from edgekd.latency.kernels import kernel_key, network_tasks, op_shape, op_tasks
from edgekd.models import create_model
from edgekd.structure.groups import trace_groups


def host_target():
    return make_target({"kind": "llvm", "mcpu": "x86-64", "num-cores": 2})


def test_mobilenetv2_epilogues_are_read_from_its_graph():
    model = create_model("mobilenetv2_cifar", width_mult=0.35).eval()
    fused = epilogues(model, (1, 3, 32, 32))
    assert fused["features.0.0"] == ("relu6",)  # stem conv + BN + ReLU6
    assert fused["classifier.1"] == ()
    blocks = [(f"features.{i}", block) for i, block in enumerate(model.features) if hasattr(block, "use_residual")]
    assert sum(block.use_residual for _name, block in blocks) >= 5
    for name, block in blocks:
        convs = [n for n, m in block.conv.named_modules() if isinstance(m, torch.nn.Conv2d)]
        *activated, projection = convs
        assert all(fused[f"{name}.conv.{n}"] == ("relu6",) for n in activated)
        # a projection: ``x + branch`` fused after it in a residual block, nothing otherwise (no activation)
        assert fused[f"{name}.conv.{projection}"] == (("radd",) if block.use_residual else ())


def test_every_conv_kernel_of_a_network_is_the_kernel_of_its_op_built_alone():
    model = create_model("mobilenetv2_cifar", width_mult=0.35).eval()
    target = host_target()
    network = {kernel_key(t.dispatched[0], target): t.task_name
               for t in network_tasks(model, torch.zeros(1, 3, 32, 32), target, tuned=True)}
    fused = epilogues(model, (1, 3, 32, 32))
    graph = trace_groups(model)
    matched = set()
    for op in graph.ops:
        keys = {kernel_key(t.dispatched[0], target)
                for t in op_tasks(op_shape(op, epilogue=fused[op.name]), target, tuned=True)}
        assert keys & network.keys(), f"{op.name} ({fused[op.name]}): no kernel of the network matches"
        matched |= keys
    left = sorted(name for key, name in network.items() if key not in matched)
    assert all(not name.startswith("fused_conv2d") for name in left), left  # pooling and reshape only

    # the old module, ReLU6 after every conv, is another kernel for a projection: tuned apart, drawn apart
    projection = next(op for op in graph.ops if fused[op.name] == ("radd",))
    relu6 = {kernel_key(t.dispatched[0], target) for t in op_tasks(op_shape(projection), target, tuned=True)}
    assert not relu6 & network.keys()
