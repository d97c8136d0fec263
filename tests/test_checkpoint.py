"""Checkpoint loading: Hugging Face transformers as the independent reference, official / easy_ViTPose
`.pth` layouts, ViTPose++ experts, shape inference and the error messages."""

from __future__ import annotations

import argparse
import logging
import re
import shutil

import pytest
import torch

from vitpose_trt.checkpoint import convert_state_dict, infer_config, load_model
from vitpose_trt.model import ViTPose, ViTPoseConfig, build_random_model, config_for

X_SEED = 1234


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 256, 192, generator=torch.Generator().manual_seed(X_SEED))


def tiny_config(decoder: str = "classic", num_keypoints: int = 17) -> ViTPoseConfig:
    return ViTPoseConfig(variant="tiny", embed_dim=64, depth=2, num_heads=4, decoder=decoder,
                         num_keypoints=num_keypoints)


@torch.no_grad()
def fill_random_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every tensor of a (HF-named) model: weights N(0, 0.02), norm scales 1 + N(0, 0.2),
    biases and BatchNorm means N(0, 0.05), BatchNorm variances U(0.5, 1.5). Much faster than
    transformers' own init, and the norms / BN statistics are not left at the trivial 1 / 0."""
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            t.zero_()
        elif name.endswith("running_var"):
            t.copy_(0.5 + torch.rand(t.shape, generator=g))
        elif name.endswith("weight") and ("norm" in name or t.ndim == 1):
            t.copy_(1 + 0.2 * torch.randn(t.shape, generator=g))
        elif name.endswith(("bias", "running_mean")):
            t.copy_(0.05 * torch.randn(t.shape, generator=g))
        else:
            t.copy_(0.02 * torch.randn(t.shape, generator=g))
    return model


def random_ours(config: ViTPoseConfig, seed: int = 0) -> ViTPose:
    with torch.device("meta"):
        model = ViTPose(config)
    return fill_random_(model.to_empty(device="cpu").eval(), seed)


def assert_same_heatmaps(ours: torch.nn.Module, expected: torch.Tensor, x: torch.Tensor) -> None:
    with torch.no_grad():
        got = ours(x)
    assert got.shape == expected.shape
    assert expected.abs().max() > 1e-2, "reference heatmaps are ~0: the comparison would prove nothing"
    assert (got - expected).abs().max().item() < 1e-4


# ----------------------------------------------------------------------------------------------
# Hugging Face transformers (independent implementation)


def hf_model(embed_dim=64, depth=2, heads=4, simple=False, num_keypoints=17, num_experts=1, part_features=0,
             eps=1e-6, seed=0):
    transformers = pytest.importorskip("transformers")
    backbone = transformers.VitPoseBackboneConfig(
        hidden_size=embed_dim, num_hidden_layers=depth, num_attention_heads=heads, out_indices=[depth],
        layer_norm_eps=eps, num_experts=num_experts, part_features=part_features,
    )
    config = transformers.VitPoseConfig(backbone_config=backbone, use_simple_decoder=simple,
                                        num_labels=num_keypoints)
    with torch.device("meta"):  # skip transformers' slow init: every tensor is filled below
        model = transformers.VitPoseForPoseEstimation(config)
    return fill_random_(model.to_empty(device="cpu").eval(), seed)


def hf_heatmaps(model, x, dataset_index=None):
    with torch.no_grad():
        if dataset_index is None:
            return model(x).heatmaps
        return model(x, dataset_index=torch.full((x.shape[0],), dataset_index)).heatmaps


@pytest.mark.parametrize("simple", [False, True], ids=["classic", "simple"])
def test_hf_vitpose_b_matches_transformers(tmp_path, simple):
    hf = hf_model(embed_dim=768, depth=12, heads=12, simple=simple)
    x = images(2)
    expected = hf_heatmaps(hf, x)
    hf.save_pretrained(tmp_path / "hf")
    del hf

    ours = load_model(tmp_path / "hf")
    assert ours.config.variant == "vitpose-b"
    assert ours.config.decoder == ("simple" if simple else "classic")
    assert ours.config.num_keypoints == 17
    assert ours.config.layer_norm_eps == 1e-6  # read from config.json
    assert not ours.training and ours.random_weights is False
    assert_same_heatmaps(ours, expected, x)

    if simple:  # the weights file alone: everything from the shapes (eps: the official 1e-6)
        alone = tmp_path / "alone" / "vitpose-b-simple.safetensors"
        alone.parent.mkdir()
        shutil.move(tmp_path / "hf" / "model.safetensors", alone)
        assert_same_heatmaps(load_model(alone, "b", 17, decoder="simple"), expected, x)


def test_hf_folder_eps_and_heads_from_config_json(tmp_path):
    hf = hf_model(embed_dim=96, depth=2, heads=8, eps=1e-5, num_keypoints=5, simple=True)
    x = images(1)
    expected = hf_heatmaps(hf, x)
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    assert (ours.config.num_heads, ours.config.layer_norm_eps, ours.config.num_keypoints) == (8, 1e-5, 5)
    assert_same_heatmaps(ours, expected, x)


def test_hf_moe_experts_match_dataset_index(tmp_path):
    hf = hf_model(embed_dim=96, depth=2, heads=4, num_experts=6, part_features=32)
    x = images(1)
    hf.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"expert=") as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert "6 experts" in msg and "AP-10K" in msg and "model_split.py" in msg
    for k in range(6):
        ours = load_model(tmp_path, expert=k)
        assert ours.backbone.blocks[0].mlp.fc2.out_features == 96
        assert_same_heatmaps(ours, hf_heatmaps(hf, x, dataset_index=k), x)
    with pytest.raises(ValueError, match="expert=6 is not in this checkpoint"):
        load_model(tmp_path, expert=6)


# --- official names, written out independently of the loader --------------------------------

def hf_to_official(sd: dict[str, torch.Tensor], head_prefix: str = "keypoint_head") -> dict[str, torch.Tensor]:
    """The renaming the official <-> HF conversion does, for building official-layout test files."""
    out = {}
    for k, v in sd.items():
        k = (k.replace("backbone.embeddings.patch_embeddings.projection", "backbone.patch_embed.proj")
              .replace("backbone.embeddings.position_embeddings", "backbone.pos_embed")
              .replace("backbone.encoder.layer.", "backbone.blocks.")
              .replace("attention.output.dense", "attn.proj")
              .replace("layernorm_before", "norm1").replace("layernorm_after", "norm2")
              .replace("backbone.layernorm", "backbone.last_norm")
              .replace("head.deconv1", f"{head_prefix}.deconv_layers.0")
              .replace("head.batchnorm1", f"{head_prefix}.deconv_layers.1")
              .replace("head.deconv2", f"{head_prefix}.deconv_layers.3")
              .replace("head.batchnorm2", f"{head_prefix}.deconv_layers.4")
              .replace("head.conv", f"{head_prefix}.final_layer"))
        out[k] = v
    for k in [k for k in out if ".attention.attention.query." in k]:
        kind = k.rsplit(".", 1)[1]
        base = k.split(".attention.attention.")[0]
        q, kk, v = (out.pop(f"{base}.attention.attention.{p}.{kind}") for p in ("query", "key", "value"))
        out[f"{base}.attn.qkv.{kind}"] = torch.cat([q, kk, v])
    return out


def test_official_moe_checkpoint_picks_expert_and_head(tmp_path):
    """ViTPose++ layout: experts in every MLP, dataset 0's head in keypoint_head, dataset j+1's in
    associate_keypoint_heads.{j} (as read by the official tools/model_split.py)."""
    num_keypoints = [17, 14, 16, 17, 17, 133]
    hf = hf_model(embed_dim=96, depth=2, heads=4, num_experts=6, part_features=32)
    sd = hf_to_official(hf.state_dict())
    heads = {}
    for j, k in enumerate(num_keypoints):
        head = hf_model(embed_dim=96, depth=1, heads=4, num_keypoints=k, seed=10 + j).head
        heads[j] = head
        if j:
            head_sd = {"head." + n: t for n, t in head.state_dict().items()}
            sd |= hf_to_official(head_sd, head_prefix=f"associate_keypoint_heads.{j - 1}")
    sd |= hf_to_official({"head." + n: t for n, t in heads[0].state_dict().items()})
    sd["backbone.cls_token"] = torch.zeros(1, 1, 96)  # present in some official files, unused
    path = tmp_path / "vitpose+_tiny.pth"
    torch.save({"meta": {"epoch": 100, "mmpose_version": "0.24.0"}, "state_dict": sd}, path)

    with pytest.raises(ValueError, match=r"load_model\(path, expert=0\)") as err:
        load_model(path)
    assert "expert=5: COCO-WholeBody, 133 keypoints" in str(err.value)

    x = images(1)
    for j, k in enumerate(num_keypoints):
        hf.head = heads[j]
        config = ViTPoseConfig(variant="tiny", embed_dim=96, depth=2, num_heads=4, num_keypoints=k)
        ours = load_model(path, config, expert=j)  # a custom size: heads are not in the shapes
        assert ours.config.num_keypoints == k
        assert_same_heatmaps(ours, hf_heatmaps(hf, x, dataset_index=j), x)
    with pytest.raises(ValueError, match="num_keypoints=17 was asked for"):
        load_model(path, num_keypoints=17, expert=1)


# ----------------------------------------------------------------------------------------------
# official / easy_ViTPose .pth


@pytest.mark.parametrize("layout", ["state_dict", "bare", "model", "module_prefix"])
def test_official_pth_layouts_roundtrip(tmp_path, layout):
    model = random_ours(tiny_config())
    sd = model.state_dict()
    obj = {
        "state_dict": {"meta": {"epoch": 210}, "state_dict": sd},
        "bare": sd,
        "model": {"model": sd},
        "module_prefix": {"state_dict": {"module." + k: v for k, v in sd.items()}},
    }[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    loaded = load_model(path, variant=tiny_config())
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, sd[k]), k
    x = images(1)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_official_vitpose_s_infers_everything(tmp_path):
    model = random_ours(config_for("s", num_keypoints=16))
    path = tmp_path / "vitpose_small_mpii.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    loaded = load_model(path)
    assert loaded.config == model.config
    with torch.no_grad():
        x = images(1)
        assert torch.equal(loaded(x), model(x))


def test_easy_vitpose_files(tmp_path, caplog):
    """easy_ViTPose saves bare state dicts (or {'state_dict'}) with the official names; its
    wholebody file keeps the ViTPose++ experts with head 5 moved into keypoint_head."""
    simple = random_ours(tiny_config("simple"))
    torch.save(simple.state_dict(), tmp_path / "vitpose-b-simple-coco.pth")
    loaded = load_model(tmp_path / "vitpose-b-simple-coco.pth", variant=tiny_config("simple"))
    x = images(1)
    with torch.no_grad():
        assert torch.equal(loaded(x), simple(x))

    whole = random_ours(tiny_config(num_keypoints=133))
    sd = whole.state_dict()
    moe = {}
    for k, v in sd.items():
        if k.endswith(("mlp.fc2.weight", "mlp.fc2.bias")):
            moe[k] = v[:48]
            for e in range(6):
                moe[k.replace("fc2", f"experts.{e}")] = v[48:] if e == 5 else torch.randn_like(v[48:])
        else:
            moe[k] = v
    torch.save({"state_dict": moe}, tmp_path / "vitpose-b-wholebody.pth")
    with pytest.raises(ValueError, match="expert="):
        load_model(tmp_path / "vitpose-b-wholebody.pth", variant=tiny_config(num_keypoints=133))
    with caplog.at_level(logging.WARNING, logger="vitpose_trt.checkpoint"):
        loaded = load_model(tmp_path / "vitpose-b-wholebody.pth", variant=tiny_config(num_keypoints=133), expert=5)
    assert "single keypoint head" in caplog.text
    with torch.no_grad():
        assert torch.equal(loaded(x), whole(x))


# ----------------------------------------------------------------------------------------------
# shape inference


@pytest.mark.parametrize(("variant", "heads"), [("s", 12), ("b", 12), ("l", 16), ("h", 16)])
@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_variant_inference_from_shapes(variant, heads, decoder):
    with torch.device("meta"):  # shapes only: ViTPose-H would otherwise allocate 2.5 GB
        sd = ViTPose(config_for(variant, decoder=decoder, num_keypoints=133)).state_dict()
    cfg = infer_config(sd)
    assert cfg == config_for(variant, decoder=decoder, num_keypoints=133)
    assert cfg.num_heads == heads


def test_inconsistent_arguments_are_errors():
    with torch.device("meta"):
        sd = ViTPose(config_for("b")).state_dict()
    with pytest.raises(ValueError, match="variant 'vitpose-l' has embed_dim 1024 and depth 24"):
        infer_config(sd, variant="l")
    with pytest.raises(ValueError, match="decoder='simple'"):
        infer_config(sd, decoder="simple")
    with pytest.raises(ValueError, match="num_keypoints=133"):
        infer_config(sd, num_keypoints=133)
    with pytest.raises(ValueError, match="unknown ViTPose variant"):
        infer_config(sd, variant="xl")
    with torch.device("meta"):
        tiny = ViTPose(tiny_config()).state_dict()
    with pytest.raises(ValueError, match="ViTPoseConfig"):
        infer_config(tiny)
    with pytest.raises(ValueError, match="embed_dim: config 64 vs checkpoint 768"):
        infer_config(sd, variant=tiny_config())


def test_convert_state_dict_accepts_hf_names():
    with torch.device("meta"):
        official = ViTPose(tiny_config()).state_dict()
    hf = {}
    for k, v in official.items():
        k = (k.replace("backbone.patch_embed.proj", "backbone.embeddings.patch_embeddings.projection")
              .replace("backbone.pos_embed", "backbone.embeddings.position_embeddings")
              .replace("backbone.blocks.", "backbone.encoder.layer.").replace("attn.proj", "attention.output.dense")
              .replace("norm1", "layernorm_before").replace("norm2", "layernorm_after")
              .replace("backbone.last_norm", "backbone.layernorm")
              .replace("keypoint_head.final_layer", "head.conv")
              .replace("keypoint_head.deconv_layers.0", "head.deconv1")
              .replace("keypoint_head.deconv_layers.1", "head.batchnorm1")
              .replace("keypoint_head.deconv_layers.3", "head.deconv2")
              .replace("keypoint_head.deconv_layers.4", "head.batchnorm2"))
        if ".attn.qkv." in k:
            for part in ("query", "key", "value"):
                shape = (v.shape[0] // 3, *v.shape[1:])
                hf[k.replace("attn.qkv", f"attention.attention.{part}")] = torch.empty(shape, device="meta")
        else:
            hf[k] = v
    converted = convert_state_dict(hf)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in official.items()}


@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_hf_state_dict_is_the_inverse_of_the_checkpoint_conversion(decoder):
    """`to_hf_state_dict` and loading an HF checkpoint read the one HF_KEY_TABLE both ways."""
    from vitpose_trt.checkpoint import to_hf_state_dict

    torch.manual_seed(0)
    sd = ViTPose(tiny_config(decoder)).state_dict()
    hf = to_hf_state_dict(sd)
    assert any(k.endswith("attention.attention.query.weight") for k in hf) and not any("blocks" in k for k in hf)
    back = convert_state_dict(hf)
    assert set(back) == set(sd)
    for key, value in sd.items():
        torch.testing.assert_close(back[key], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no transformers name for backbone.cls_token"):
        to_hf_state_dict({**sd, "backbone.cls_token": torch.zeros(1)})


# ----------------------------------------------------------------------------------------------
# errors


def _save_tiny(tmp_path, edit) -> tuple:
    sd = dict(ViTPose(tiny_config()).state_dict())
    edit(sd)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, path)
    return path


def test_missing_keys_are_named(tmp_path):
    path = _save_tiny(tmp_path, lambda sd: sd.pop("backbone.blocks.1.attn.proj.weight"))
    with pytest.raises(ValueError, match=r"missing keys \(1\): backbone\.blocks\.1\.attn\.proj\.weight"):
        load_model(path, variant=tiny_config())


def test_long_key_lists_are_truncated(tmp_path):
    def drop_block0(sd):
        for k in [k for k in sd if k.startswith("backbone.blocks.0.")]:
            del sd[k]
    path = _save_tiny(tmp_path, drop_block0)
    with pytest.raises(ValueError, match=r"missing keys \(12\): backbone\.blocks\.0\..*\.\.\. \(4 more\)"):
        load_model(path, variant=tiny_config())


def test_unexpected_keys_are_named(tmp_path):
    path = _save_tiny(tmp_path, lambda sd: sd.update({"backbone.blocks.0.attn.relative_position_bias": torch.zeros(3)}))
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): backbone\.blocks\.0\.attn\.relative_position_bias"):
        load_model(path, variant=tiny_config())


def test_shape_mismatch_is_named(tmp_path):
    path = _save_tiny(tmp_path, lambda sd: sd.update({"backbone.blocks.1.mlp.fc1.bias": torch.zeros(128)}))
    with pytest.raises(ValueError, match=re.escape("mismatched shapes (1): backbone.blocks.1.mlp.fc1.bias "
                                                   "(checkpoint (128,), model (256,))")):
        load_model(path, variant=tiny_config())


def test_missing_num_batches_tracked_is_tolerated(tmp_path):
    path = _save_tiny(tmp_path, lambda sd: [sd.pop(k) for k in list(sd) if k.endswith("num_batches_tracked")])
    assert load_model(path, variant=tiny_config()).config.num_keypoints == 17


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "with_args.pth"
    torch.save({"state_dict": ViTPose(tiny_config()).state_dict(), "args": argparse.Namespace(lr=1e-3)}, path)
    with pytest.raises(ValueError, match="non-tensor pickled objects.*refused for safety"):
        load_model(path, variant=tiny_config())


def test_unknown_files_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.pth")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(ValueError, match="unsupported checkpoint type '.onnx'"):
        load_model(tmp_path / "model.onnx")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_model(tmp_path / "garbage.pth")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="config.json is missing"):
        load_model(tmp_path / "folder")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not tensors: weights"):
        load_model(tmp_path / "list.pth")
    torch.save({"classifier.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="unrecognized checkpoint layout"):
        load_model(tmp_path / "other.pth")
    torch.save({"state_dict": ViTPose(tiny_config()).state_dict()}, tmp_path / "plain.pth")
    with pytest.raises(ValueError, match="plain .* checkpoint without ViTPose\\+\\+ experts"):
        load_model(tmp_path / "plain.pth", variant=tiny_config(), expert=2)


# ----------------------------------------------------------------------------------------------
# random model


def test_random_model_is_deterministic_and_flagged(caplog):
    caplog.set_level(logging.DEBUG, logger="vitpose_trt")  # a warning once per process, debug after
    state = torch.get_rng_state()
    a = build_random_model(tiny_config(), seed=0)
    b = build_random_model(tiny_config(), seed=0)
    c = build_random_model(tiny_config(), seed=1)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG must be left alone"
    assert a.random_weights is True and not a.training
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["backbone.blocks.0.attn.qkv.weight"], sc["backbone.blocks.0.attn.qkv.weight"])
    assert "RANDOM weights" in caplog.text


def test_load_model_without_path_is_random_vitpose_b(caplog):
    with caplog.at_level(logging.DEBUG, logger="vitpose_trt"):  # a warning once per process, debug after
        model = load_model()
    assert model.random_weights is True and not model.training
    assert model.config == config_for("b")
    assert "RANDOM" in caplog.text
    small = load_model(None, "s", 5, decoder="simple")
    assert (small.config.variant, small.config.decoder, small.config.num_keypoints) == ("vitpose-s", "simple", 5)


def test_int8_safetensors_are_refused_with_the_dtypes(tmp_path, tiny_model):
    from safetensors.torch import save_file

    from vitpose_trt.checkpoint import load_model

    sd = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    name = "keypoint_head.final_layer.weight"
    sd[name] = (sd[name] * 100).to(torch.int8)
    path = tmp_path / "quantized.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError, match=f"{name}: int8"):
        load_model(path)


@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_random_model_has_a_trained_models_output_scale(decoder, coco_sample):
    """Random weights whose heatmaps peak near 5e-5 make every absolute tolerance vacuous; the
    calibrated random model peaks like a trained one (~1) on real crops."""
    import numpy as np

    from vitpose_trt import preprocess

    model = build_random_model(config_for("s", decoder=decoder), seed=1)
    _, frame, boxes = coco_sample[0]
    crops = preprocess(frame, boxes[:4, :4], "udp")[0]
    with torch.inference_mode():
        peaks = model(torch.from_numpy(crops)).numpy().reshape(4, 17, -1).max(-1)
    assert np.median(peaks) >= 0.1 and peaks.max() < 10
