"""Traced channel groups on the three CIFAR models and on tricky topologies (concat)."""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models import create_model
from edgekd.structure.groups import trace_groups


def _out_group(graph, name):
    (segment,) = graph.op(name).out_segments
    return segment.group


def _in_groups(graph, name):
    return {s.group for s in graph.op(name).in_segments}


def test_mobilenetv2_residual_stage_is_one_group_and_depthwise_couples_in_and_out():
    graph = trace_groups(create_model("mobilenetv2_cifar", width_mult=0.5))
    # stage3 = features.4..6: the projections of all three blocks write one group (residual adds)
    stage3 = {_out_group(graph, f"features.{i}.conv.2") for i in (4, 5, 6)}
    assert len(stage3) == 1
    assert _in_groups(graph, "features.7.conv.0.0") == stage3  # and the next stage reads it
    # stage4's first block has stride 2: its projection starts a new group
    assert _out_group(graph, "features.7.conv.2") not in stage3
    # depthwise: input group == output group == the expansion conv's output group
    dw = graph.op("features.5.conv.1.0")
    assert dw.kind == "dwconv"
    assert _in_groups(graph, dw.name) == {_out_group(graph, dw.name)} == {_out_group(graph, "features.5.conv.0.0")}
    group = graph.groups[_out_group(graph, dw.name)]
    assert {m.name for m in group.bns} == {"features.5.conv.0.1", "features.5.conv.1.1"}
    assert group.prunable
    # the classifier output is fixed, its input is the head conv's group
    assert not graph.groups[_out_group(graph, "classifier.1")].prunable
    assert _in_groups(graph, "classifier.1") == {_out_group(graph, "features.18.0")}


def test_resnet56_stage_outputs_and_shortcut_form_one_group():
    graph = trace_groups(create_model("resnet56_cifar"))
    stage2 = {_out_group(graph, f"layer2.{i}.conv2") for i in range(9)}
    assert len(stage2) == 1
    assert _out_group(graph, "layer2.0.downsample.0") in stage2
    stage1 = {_out_group(graph, f"layer1.{i}.conv2") for i in range(9)} | {_out_group(graph, "conv1")}
    assert len(stage1) == 1
    inner = _out_group(graph, "layer2.3.conv1")
    assert inner not in stage2 and _in_groups(graph, "layer2.3.conv2") == {inner}
    assert graph.groups[inner].size == 32 and graph.groups[inner].prunable


def test_vgg16_each_conv_is_its_own_group():
    model = create_model("vgg16_bn_cifar")
    graph = trace_groups(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert len({_out_group(graph, n) for n in convs}) == 13
    assert _in_groups(graph, "classifier") == {_out_group(graph, convs[-1])}


class ConcatNet(nn.Module):
    """Two branches concatenated and read by a 1×1 conv: the concat slices are separate groups."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.mix = nn.Sequential(nn.Conv2d(10, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = self.mix(torch.cat([self.a(x), self.b(x)], 1))
        return self.fc(y.mean((2, 3)))


def test_concat_slices_are_groups_and_the_reader_sees_both():
    graph = trace_groups(ConcatNet(), (1, 3, 8, 8))
    a, b = _out_group(graph, "a.0"), _out_group(graph, "b.0")
    assert a != b
    segments = graph.op("mix.0").in_segments
    assert {s.group for s in segments} == {a, b}
    by_group = {s.group: s.module_idx.tolist() for s in segments}
    assert by_group[a] == list(range(6)) and by_group[b] == list(range(6, 10))
