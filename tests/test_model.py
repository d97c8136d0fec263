"""The readable ViTPose model: configs, official parameter names, forward shapes, ONNX export."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitpose_trt.model import VARIANTS, ViTPose, ViTPoseConfig, config_for, count_macs, model_flops


def tiny_config(decoder: str = "classic", num_keypoints: int = 17) -> ViTPoseConfig:
    return ViTPoseConfig(variant="tiny", embed_dim=64, depth=2, num_heads=4, decoder=decoder,
                         num_keypoints=num_keypoints)


@pytest.mark.parametrize(("name", "expected"), [
    ("vitpose-s", "vitpose-s"), ("S", "vitpose-s"), ("small", "vitpose-s"),
    ("b", "vitpose-b"), ("Base", "vitpose-b"), ("ViTPose-B", "vitpose-b"),
    ("l", "vitpose-l"), ("LARGE", "vitpose-l"), ("h", "vitpose-h"), ("huge", "vitpose-h"),
])
def test_config_for_accepts_aliases(name, expected):
    cfg = config_for(name)
    assert cfg.variant == expected
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads) == VARIANTS[expected]


def test_variant_table_matches_official_sizes():
    assert VARIANTS == {
        "vitpose-s": (384, 12, 12),
        "vitpose-b": (768, 12, 12),
        "vitpose-l": (1024, 24, 16),
        "vitpose-h": (1280, 32, 16),
    }


def test_config_for_rejects_unknown_names():
    with pytest.raises(ValueError, match="vitpose-b") as err:
        config_for("xl")
    assert "small" in str(err.value)
    with pytest.raises(ValueError, match="decoder"):
        config_for("b", decoder="fancy")


def test_geometry_of_default_input():
    cfg = config_for("b")
    assert cfg.input_size == (256, 192)
    assert cfg.grid_size == (16, 12)
    assert cfg.num_patches == 192
    assert cfg.heatmap_size == (64, 48)
    assert cfg.layer_norm_eps == 1e-6


def test_state_dict_names_mirror_official_checkpoint():
    model = ViTPose(tiny_config())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "backbone.pos_embed": (1, 193, 64),
        "backbone.patch_embed.proj.weight": (64, 3, 16, 16),
        "backbone.patch_embed.proj.bias": (64,),
        "backbone.last_norm.weight": (64,),
        "backbone.last_norm.bias": (64,),
        "keypoint_head.deconv_layers.0.weight": (64, 256, 4, 4),
        "keypoint_head.deconv_layers.3.weight": (256, 256, 4, 4),
        "keypoint_head.final_layer.weight": (17, 256, 1, 1),
        "keypoint_head.final_layer.bias": (17,),
    }
    for i in range(2):
        p = f"backbone.blocks.{i}."
        expected |= {
            p + "norm1.weight": (64,), p + "norm1.bias": (64,),
            p + "attn.qkv.weight": (192, 64), p + "attn.qkv.bias": (192,),
            p + "attn.proj.weight": (64, 64), p + "attn.proj.bias": (64,),
            p + "norm2.weight": (64,), p + "norm2.bias": (64,),
            p + "mlp.fc1.weight": (256, 64), p + "mlp.fc1.bias": (256,),
            p + "mlp.fc2.weight": (64, 256), p + "mlp.fc2.bias": (64,),
        }
    for i in (1, 4):
        p = f"keypoint_head.deconv_layers.{i}."
        expected |= {p + n: (256,) for n in ("weight", "bias", "running_mean", "running_var")}
        expected[p + "num_batches_tracked"] = ()
    assert shapes == expected
    conv = model.backbone.patch_embed.proj
    assert (conv.kernel_size, conv.stride, conv.padding) == ((16, 16), (16, 16), (2, 2))


def test_simple_decoder_names():
    model = ViTPose(tiny_config("simple", num_keypoints=5))
    head = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("keypoint_head")}
    assert head == {"keypoint_head.final_layer.weight": (5, 64, 3, 3), "keypoint_head.final_layer.bias": (5,)}


@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_forward_shape_and_batch_independence(decoder):
    torch.manual_seed(0)
    model = ViTPose(tiny_config(decoder)).eval()
    assert model.random_weights is False
    x = torch.randn(3, 3, 256, 192)
    with torch.no_grad():
        y = model(x)
        y1 = model(x[1:2])
    assert y.shape == (3, 17, 64, 48)
    torch.testing.assert_close(y[1:2], y1, rtol=1e-5, atol=1e-6)


def _reference_forward(model: ViTPose, x: torch.Tensor) -> torch.Tensor:
    """The official ViTPose computation written out longhand (no SDPA, no nn modules)."""
    cfg, bb = model.config, model.backbone
    eps = cfg.layer_norm_eps
    B = x.shape[0]
    t = F.conv2d(x, bb.patch_embed.proj.weight, bb.patch_embed.proj.bias, stride=16, padding=2)
    Hp, Wp = t.shape[2:]
    t = t.flatten(2).transpose(1, 2)
    t = t + bb.pos_embed[:, 1:] + bb.pos_embed[:, :1]
    for blk in bb.blocks:
        h = F.layer_norm(t, (cfg.embed_dim,), blk.norm1.weight, blk.norm1.bias, eps)
        hs = cfg.embed_dim // cfg.num_heads
        qkv = (h @ blk.attn.qkv.weight.T + blk.attn.qkv.bias).reshape(B, -1, 3, cfg.num_heads, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q * hs**-0.5) @ k.transpose(-2, -1)).softmax(-1)
        h = (attn @ v).transpose(1, 2).reshape(B, -1, cfg.embed_dim)
        t = t + h @ blk.attn.proj.weight.T + blk.attn.proj.bias
        h = F.layer_norm(t, (cfg.embed_dim,), blk.norm2.weight, blk.norm2.bias, eps)
        h = F.gelu(h @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias)
        t = t + h @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias
    t = F.layer_norm(t, (cfg.embed_dim,), bb.last_norm.weight, bb.last_norm.bias, eps)
    f = t.permute(0, 2, 1).reshape(B, -1, Hp, Wp)
    head = model.keypoint_head
    if cfg.decoder == "simple":
        f = F.interpolate(F.relu(f), scale_factor=4, mode="bilinear", align_corners=False)
        return head.final_layer(f)
    return head.final_layer(head.deconv_layers(f))


@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_forward_matches_longhand_reference(decoder):
    torch.manual_seed(1)
    model = ViTPose(tiny_config(decoder)).eval()
    with torch.no_grad():  # make the norms and BN stats non-trivial
        for name, t in model.state_dict().items():
            if t.is_floating_point() and ("norm" in name or "deconv_layers.1" in name or "deconv_layers.4" in name):
                if name.endswith(("weight", "running_var")):
                    t.copy_(t.abs() + 0.3 * torch.rand_like(t))
                else:
                    t.copy_(0.1 * torch.randn_like(t))
        x = torch.randn(2, 3, 256, 192)
        torch.testing.assert_close(model(x), _reference_forward(model, x), rtol=1e-4, atol=1e-5)


# the TorchScript exporter (dynamo=False, what the project exports with) warns that it is legacy
@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_onnx_export_dynamic_batch(tmp_path, decoder):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = ViTPose(tiny_config(decoder)).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 256, 192),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["heatmaps"],
                      dynamic_axes={"input": {0: "batch"}, "heatmaps": {0: "batch"}})
    graph = onnx.load(str(path)).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    assert ops["LayerNormalization"] == 2 * model.config.depth + 1
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, 256, 192)
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(None, {"input": x.numpy()})
        assert got.shape == (batch, 17, 64, 48)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# --- FLOPs (count_macs / model_flops) ---------------------------------------------------------


def _counted_flops(config) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):  # shapes only: ViTPose-B costs nothing to count
        model = ViTPose(config).eval()
        x = torch.empty(1, 3, *config.input_size)
    counter = FlopCounterMode(display=False)
    # the MATH backend decomposes attention into bmm, which the counter sees (fused CPU kernels are not counted)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("config", [
    ViTPoseConfig(variant="tiny", embed_dim=32, depth=1, num_heads=2, decoder="simple"),
    ViTPoseConfig(variant="small-odd", embed_dim=48, depth=2, num_heads=3, decoder="classic", num_keypoints=5,
                  mlp_ratio=2),
    config_for("b"),
    config_for("b", decoder="simple"),
    config_for("s"),
], ids=["tiny-simple", "odd-classic", "vitpose-b", "vitpose-b-simple", "vitpose-s"])
def test_flop_formula_matches_torch_flop_counter(config):
    assert model_flops(config) == _counted_flops(config)


def test_vitpose_b_flops_per_crop():
    macs = count_macs(config_for("b"))
    assert 17.0e9 < macs["total"] < 19.0e9  # 18.52 GMAC: 17.84 without the attention matmuls
    assert macs["total"] == sum(v for k, v in macs.items() if k != "total")
    assert count_macs(config_for("b"), include_attention=False)["attention"] == 0
