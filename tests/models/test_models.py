import pytest
import torch

from edgekd.errors import ConfigError
from edgekd.models import create_model, list_models, model_info
from edgekd.models.counting import count_model, torch_flop_count
from edgekd.models.io import ModelArch, load_model, save_model
from edgekd.models.registry import ModelRegistry
from edgekd.testing.models import randomise_bn


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_and_counts_like_torch(name):
    model = create_model(name).eval()
    shape = (1, *model_info(name).input_size)
    assert model(torch.randn(2, *shape[1:])).shape == (2, 10)
    count = count_model(model, shape)
    assert count.flops == torch_flop_count(model, shape)  # 2 FLOPs per multiply-add, conv + linear
    assert count.params == sum(p.numel() for p in model.parameters())


def test_published_counts():
    resnet56 = count_model(create_model("resnet56_cifar"))
    assert resnet56.params == pytest.approx(0.85e6, rel=0.01)  # He et al.: 0.85 M
    assert resnet56.macs == pytest.approx(125e6, rel=0.01)  # ~125 M multiply-adds
    mbv2 = count_model(create_model("mobilenetv2_cifar"))
    assert mbv2.params == pytest.approx(2.24e6, rel=0.01)  # CIFAR MobileNetV2 with a 10-way head
    assert mbv2.macs == pytest.approx(88.0e6, rel=0.01)
    vgg = count_model(create_model("vgg16_bn_cifar"))
    assert vgg.macs == pytest.approx(313e6, rel=0.01)  # network-slimming / Torch-Pruning VGG-16 (313 M MACs)


def test_width_multiplier_scales_mobilenetv2():
    half = count_model(create_model("mobilenetv2_cifar", width_mult=0.5))
    full = count_model(create_model("mobilenetv2_cifar"))
    assert half.flops < 0.7 * full.flops


def test_unknown_model_names_the_accepted_ones():
    with pytest.raises(ConfigError, match="accepted: mobilenetv2_cifar"):
        create_model("mobilenet_v9")


def test_registry_is_an_instance_and_refuses_duplicates():
    registry = ModelRegistry()
    registry.register("tiny", input_size=(3, 8, 8), family="test")(torch.nn.Identity)
    with pytest.raises(ValueError):
        registry.register("tiny", input_size=(3, 8, 8), family="test")(torch.nn.Identity)
    assert registry.names() == ["tiny"]


def test_block_counts_sum_to_total():
    model = create_model("mobilenetv2_cifar")
    count = count_model(model)
    blocks = count.by_block(model.stage_modules())
    assert sum(b["flops"] for b in blocks.values()) == count.flops
    assert sum(b["weight_params"] for b in blocks.values()) == count.weight_params


def test_narrowed_model_round_trips_without_the_recipe(tmp_path):
    torch.manual_seed(0)
    model = randomise_bn(create_model("mobilenetv2_cifar", width_mult=0.5))
    # Physically narrow one expansion (conv 1x1 -> bn -> depthwise -> bn -> project) as pruning would.
    block = model.features[4].conv
    keep = torch.arange(0, block[0][0].out_channels, 2)
    state = model.state_dict()
    prefix = "features.4.conv"
    for name in (f"{prefix}.0.0.weight", f"{prefix}.1.0.weight"):
        state[name] = state[name][keep]
    for stat in ("weight", "bias", "running_mean", "running_var"):
        for bn in (f"{prefix}.0.1", f"{prefix}.1.1"):
            state[f"{bn}.{stat}"] = state[f"{bn}.{stat}"][keep]
    state[f"{prefix}.2.weight"] = state[f"{prefix}.2.weight"][:, keep]
    from edgekd.models.io import resize_to_state_dict

    resize_to_state_dict(model, state)
    model.load_state_dict(state)
    save_model(tmp_path / "model.pt", model, ModelArch("mobilenetv2_cifar", {"width_mult": 0.5}))
    loaded = load_model(tmp_path)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        assert (expected[0] - expected[1:]).abs().max() > 1e-2  # the output depends on the input
        assert torch.equal(loaded.model(x), expected)
    assert loaded.model.features[4].conv[1][0].groups == len(keep)
