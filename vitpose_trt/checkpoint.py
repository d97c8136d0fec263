"""Loading ViTPose checkpoints into `vitpose_trt.model.ViTPose`.

Formats, detected automatically:

* official ViTPose / easy_ViTPose `.pth` (also `.pt`, `.bin`, `.ckpt`): `{'state_dict': sd}`,
  `{'model': sd}` or a bare state dict, optionally with a `module.` (DataParallel) prefix. Our
  module names mirror the official ones, so this is a plain load. Read with
  `torch.load(..., weights_only=True)` only: files that need arbitrary unpickling are refused.
* Hugging Face transformers `VitPoseForPoseEstimation`: a folder with `config.json` and
  `model.safetensors` (or sharded safetensors / `pytorch_model.bin`), or a `.safetensors` file
  alone (the architecture is then inferred from the tensor shapes).
* ViTPose++ mixture-of-experts checkpoints (official or HF): pick a dataset with `dataset="aic"`
  (or its index, `expert=1`); the expert is folded into a plain `fc2` (exact) and the matching
  keypoint head is used.

The loaded model records the dataset its head was trained on (`model.dataset`, see
`vitpose_trt.datasets`): the named one, the ViTPose++ head's, the one config.json's labels name, or
the one K tells.

Each format has a small adapter that returns a state dict with our (= the official) key names;
`_load_state_dict_strict` then checks it against the model and loads it.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from vitpose_trt import datasets
from vitpose_trt.model import VARIANTS, ViTPose, ViTPoseConfig, build_random_model, canonical_variant

log = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
# ViTPose++ dataset order: expert i and keypoint head i were trained on DATASETS[i]
DATASETS = tuple(d.title for d in datasets.experts())
HF_DEFAULT_LAYER_NORM_EPS = 1e-12  # VitPoseBackboneConfig's default, used when config.json omits it
_MAX_LISTED = 8

StateDict = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------
# public API


def load_model(path: str | os.PathLike[str] | None = None, variant: str | ViTPoseConfig | None = None,
               num_keypoints: int | None = None, *, decoder: str | None = None, expert: int | None = None,
               dataset: str | datasets.Dataset | None = None, device: str | torch.device = "cpu") -> ViTPose:
    """Load a ViTPose checkpoint (or build the random-weight model) in eval mode.

    Args:
        path: an official/easy_ViTPose `.pth`, a Hugging Face VitPose folder or `.safetensors`
            file, or None for the fixed-seed random model (see `build_random_model`).
        variant: "s", "b", "l", "h" (or "vitpose-b", "base", ...): checked against the checkpoint;
            inferred from the shapes when None. A `ViTPoseConfig` may be given for non-standard
            sizes (their head count cannot be read from the shapes).
        num_keypoints: K, checked against the checkpoint (inferred when None).
        decoder: "classic" or "simple", checked against the checkpoint (inferred when None).
        expert: ViTPose++ (mixture-of-experts) checkpoints only: the dataset index whose expert
            and keypoint head to use (0 COCO, 1 AIC, 2 MPII, 3 AP-10K, 4 APT-36K, 5 COCO-WholeBody);
            default: `dataset`'s.
        dataset: the keypoint dataset of the head (a `vitpose_trt.datasets` name): picks a ViTPose++
            checkpoint's expert and head, and is checked against the head's K (recorded as
            `model.dataset`). Default: the head's own (ViTPose++ head, config.json labels, or K).
        device: where to put the model.

    Returns:
        The ViTPose model in eval mode, FP32.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: unknown format or dataset, unsafe pickle, MoE checkpoint without `expert` or
            `dataset`, a dataset whose K differs from the head's, or a checkpoint that does not fit
            (the message names the missing/unexpected keys and mismatched shapes).
    """
    ds = datasets.get(dataset) if dataset is not None else None
    if path is None:
        model = _random_model(variant, num_keypoints, decoder, expert, ds)
    else:
        model = _checkpoint_model(Path(os.fspath(path)), variant, num_keypoints, decoder, expert, ds)
    return model.to(device).eval()


def _random_model(variant: str | ViTPoseConfig | None, num_keypoints: int | None, decoder: str | None,
                  expert: int | None, ds: datasets.Dataset | None) -> ViTPose:
    """`load_model(None, ...)`: the fixed-seed random model, K from `num_keypoints`, else `ds`, else 17."""
    if expert is not None:
        raise ValueError("expert= only applies to ViTPose++ checkpoints; no checkpoint path was given")
    k = num_keypoints if num_keypoints is not None else (ds.num_keypoints if ds is not None else 17)
    model = build_random_model(variant if variant is not None else "b", decoder or "classic", k)
    model.dataset = _recorded_name(datasets.resolve(ds, k, what="the random model"), ds, None, k)
    return model


def _checkpoint_model(path: Path, variant: str | ViTPoseConfig | None, num_keypoints: int | None,
                      decoder: str | None, expert: int | None, ds: datasets.Dataset | None) -> ViTPose:
    """`load_model(path, ...)`: the checkpoint's weights in a model of its shapes, recording its dataset.
    Errors of the checkpoint's contents name the path."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state_dict, hf_config = read_checkpoint(path)  # its errors name the path already
    hints = _hf_config_hints(hf_config, path) if hf_config is not None else {}
    try:
        experts, heads = moe_layout(state_dict)
        expert = _chosen_expert(expert, ds, experts)
        state_dict = convert_state_dict(state_dict, expert=expert)
        config = infer_config(state_dict, variant, decoder, num_keypoints, **hints)
        # the head's own dataset: a ViTPose++ head j is dataset j's; an HF config may name its labels
        recorded = datasets.by_expert(expert).name if (experts and expert in heads and len(heads) > 1) else \
            _hf_labels_dataset(hf_config)
        if ds is not None and experts and len(heads) == 1 and ds.num_keypoints != config.num_keypoints:
            raise ValueError(f"dataset {ds.name!r} has {ds.num_keypoints} keypoints but the checkpoint's single "
                             f"keypoint head has {config.num_keypoints} (Hugging Face ViTPose++ checkpoints keep "
                             f"only the COCO head: run expert={expert} with dataset='coco')")
        found = datasets.resolve(ds, config.num_keypoints, recorded, what="the checkpoint's keypoint head")
        with torch.device("meta"):
            model = ViTPose(config)  # no memory, no random init: every tensor comes from the checkpoint
        _load_state_dict_strict(model, state_dict)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    model.dataset = _recorded_name(found, ds, recorded, config.num_keypoints)
    log.info("loaded %s: %s, %s decoder, %d keypoints (%s)", path, config.variant, config.decoder,
             config.num_keypoints, found.title if found is not None else "no known dataset")
    return model


def _chosen_expert(expert: int | None, ds: datasets.Dataset | None, experts: list[int]) -> int | None:
    """The ViTPose++ expert to fold in: the one asked for, else the named dataset's (None: a plain checkpoint,
    or neither named)."""
    if expert is None and ds is not None and experts:
        if ds.expert_index is None:
            raise ValueError(f"dataset {ds.name!r} is not one of ViTPose++'s; this checkpoint's experts are "
                             + ", ".join(f"{i} ({datasets.by_expert(i).name})" for i in experts))
        expert = ds.expert_index
    return expert


def _recorded_name(found: datasets.Dataset | None, named, recorded: str | None, k: int) -> str | None:
    """What `model.dataset` records: a dataset that was named, recorded or is the only one of K; not
    K = 17's COCO default (an unnamed AP-10K checkpoint exported now must not claim to be COCO later)."""
    if found is None or (named is None and recorded is None and len(datasets.with_num_keypoints(k)) != 1):
        return None
    return found.name


def moe_layout(state_dict: Mapping[str, torch.Tensor]) -> tuple[list[int], list[int]]:
    """(expert indices, keypoint head indices) of a checkpoint (any layout); ([], [0]) for a plain one.

    Head 0 is `keypoint_head` (or HF's `head`), head j + 1 the official `associate_keypoint_heads.{j}`.
    """
    keys = [k.removeprefix("module.") for k in state_dict]
    experts = sorted({int(m.group(1)) for k in keys if (m := _EXPERT.search(k))})
    return experts, [0] + sorted({int(m.group(1)) + 1 for k in keys if (m := _ASSOC_HEAD.match(k))})


def _hf_labels_dataset(hf_config: dict | None) -> str | None:
    """The dataset whose keypoint names config.json's `id2label` lists exactly (SynthPose's does), else None."""
    labels = (hf_config or {}).get("id2label") or {}
    try:
        names = tuple(labels[str(i)] for i in range(len(labels)))
    except KeyError:
        return None
    return next((d.name for d in datasets.DATASETS.values() if d.keypoints == names), None)


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[StateDict, dict | None]:
    """Read the raw tensors of a checkpoint (names as stored) and the HF config.json if any.

    Returns:
        (state_dict, hf_config): hf_config is the parsed config.json of a Hugging Face folder
        (or one next to a `.safetensors` file), else None.
    """
    path = Path(os.fspath(path))
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{path}: no permission to read it")
    if path.is_dir():
        state_dict, hf_config = _read_hf_folder(path)
    elif path.suffix.lower() == SAFETENSORS_SUFFIX:
        sibling = path.parent / "config.json"
        hf_config = _read_json(sibling) if sibling.is_file() else None
        if hf_config is not None and hf_config.get("model_type") != "vitpose":
            hf_config = None
        state_dict = _read_safetensors([path])
    elif path.suffix.lower() in TORCH_SUFFIXES:
        state_dict, hf_config = _read_torch_file(path), None
    else:
        raise ValueError(_unsupported(path))
    _check_float_weights(state_dict, path)
    return state_dict, hf_config


def _check_float_weights(state_dict: StateDict, path: Path) -> None:
    """Weights must be floating point: an int8 (quantized) tensor cast to float32 would load "fine"
    and give meaningless poses. Integer buffers (BatchNorm's num_batches_tracked) are allowed."""
    bad = [f"{k}: {str(v.dtype).removeprefix('torch.')}" for k, v in state_dict.items()
           if not v.is_floating_point() and not k.endswith("num_batches_tracked")]
    if bad:
        raise ValueError(f"{path}: expected floating-point weights (float32/float16/bfloat16); these tensors are "
                         f"not: {_fmt(bad)} (a quantized checkpoint is not supported: use the float one)")


def _unsupported(path: Path) -> str:
    suffix = path.suffix.lower()
    return (
        f"{path}: unsupported checkpoint type {suffix or '(no extension)'!r}; expected an official/easy_ViTPose "
        f"checkpoint ({', '.join(TORCH_SUFFIXES)}), a Hugging Face VitPose folder (config.json + "
        "model.safetensors) or a .safetensors file"
    )


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], expert: int | None = None) -> StateDict:
    """Any supported layout -> our (official) key names, with a ViTPose++ expert folded in.

    Args:
        state_dict: tensors as stored in an official, easy_ViTPose or HF checkpoint.
        expert: dataset index for ViTPose++ checkpoints (see `load_model`).
    """
    sd = _strip_prefix(dict(state_dict), "module.")
    sd = _from_hf(sd) if _detect_format(sd) == "hf" else _from_official(sd)
    return _select_expert(sd, expert)


def infer_config(state_dict: Mapping[str, torch.Tensor], variant: str | ViTPoseConfig | None = None,
                 decoder: str | None = None, num_keypoints: int | None = None, *, num_heads: int | None = None,
                 layer_norm_eps: float | None = None, input_size: tuple[int, int] | None = None) -> ViTPoseConfig:
    """The ViTPoseConfig of a state dict with our key names, from its tensor shapes.

    Only `.shape` is read, so meta tensors work. Given arguments are checked against the shapes.

    Args:
        state_dict: our key names, experts already folded (see `convert_state_dict`).
        variant: expected size name, or a full ViTPoseConfig to check and return.
        decoder: expected decoder.
        num_keypoints: expected K.
        num_heads: head count (shapes do not tell it); default: that of the matching standard size.
        layer_norm_eps: default 1e-6 (official).
        input_size: (H, W); default (256, 192) when the position embedding fits it.

    Raises:
        ValueError: the shapes contradict a given argument, or fit no model we can build.
    """
    facts = _shape_facts(state_dict)
    _check_asked(facts, decoder, num_keypoints)
    if isinstance(variant, ViTPoseConfig):
        return _checked_config(variant, facts)
    embed_dim, depth = facts["embed_dim"], facts["depth"]
    name = _variant_name(variant, embed_dim, depth)
    if num_heads is None:
        num_heads = _standard_num_heads(name, embed_dim, depth)
    h, w = input_size if input_size is not None else ViTPoseConfig().input_size
    config = ViTPoseConfig(
        variant=name or f"vitpose-custom-{embed_dim}x{depth}", embed_dim=embed_dim, depth=depth,
        num_heads=num_heads, mlp_ratio=facts["mlp_ratio"], patch_size=facts["patch_size"],
        input_size=(h, w), decoder=facts["decoder"], num_keypoints=facts["num_keypoints"],
        deconv_channels=facts["deconv_channels"],
        layer_norm_eps=1e-6 if layer_norm_eps is None else float(layer_norm_eps), qkv_bias=facts["qkv_bias"],
    )
    if config.num_patches != facts["num_patches"]:
        raise ValueError(f"the position embedding holds {facts['num_patches']} tokens, but a {h}x{w} input gives "
                         f"{config.num_patches}; pass variant=ViTPoseConfig(input_size=...)")
    return config


def _check_asked(facts: dict, decoder: str | None, num_keypoints: int | None) -> None:
    """The decoder and K asked for (None: anything) must be the checkpoint's."""
    if decoder is not None and decoder != facts["decoder"]:
        raise ValueError(f"decoder={decoder!r} was asked for, but the checkpoint has a {facts['decoder']!r} decoder")
    if num_keypoints is not None and num_keypoints != facts["num_keypoints"]:
        raise ValueError(f"num_keypoints={num_keypoints} was asked for, but the checkpoint's head has "
                         f"{facts['num_keypoints']} keypoints")


def _checked_config(config: ViTPoseConfig, facts: dict) -> ViTPoseConfig:
    """A given ViTPoseConfig, if every fact the shapes tell agrees with it (a simple decoder has no
    deconv channels to compare)."""
    checked = [k for k in facts if not (k == "deconv_channels" and facts["decoder"] == "simple")]
    diff = [f"{k}: config {getattr(config, k)!r} vs checkpoint {facts[k]!r}"
            for k in checked if getattr(config, k) != facts[k]]
    if diff:
        raise ValueError("the given ViTPoseConfig does not match the checkpoint: " + "; ".join(diff))
    return config


def _variant_name(variant: str | None, embed_dim: int, depth: int) -> str | None:
    """The standard size name: the one asked for, checked against the shapes; else the one of this
    embed_dim x depth (None: no standard size has it)."""
    if variant is None:
        return next((n for n, (e, d, _) in VARIANTS.items() if (e, d) == (embed_dim, depth)), None)
    name = canonical_variant(variant)
    v_embed, v_depth, _ = VARIANTS[name]
    if (v_embed, v_depth) != (embed_dim, depth):
        raise ValueError(f"variant {name!r} has embed_dim {v_embed} and depth {v_depth}, but the checkpoint "
                         f"has embed_dim {embed_dim} and depth {depth}")
    return name


def _standard_num_heads(name: str | None, embed_dim: int, depth: int) -> int:
    """The head count of a standard size (the shapes do not tell it); a custom size must name it."""
    if name is None:
        sizes = ", ".join(f"{n} ({e}x{d})" for n, (e, d, _) in VARIANTS.items())
        raise ValueError(f"embed_dim {embed_dim} x depth {depth} matches no standard ViTPose size ({sizes}); "
                         "pass variant=ViTPoseConfig(...) to load a custom size")
    return VARIANTS[name][2]


# --------------------------------------------------------------------------------------------
# readers


def _read_torch_file(path: Path) -> StateDict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if unsafe:
            raise ValueError(
                f"{path}: the file holds non-tensor pickled objects (e.g. {unsafe.group(1)}); it is refused for "
                "safety: checkpoints are read with torch.load(weights_only=True) only. If you trust the file, "
                "re-save just its tensors elsewhere: torch.save(ckpt['state_dict'], 'clean.pth')"
            ) from None
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint (the weights-only loader refused it: {first})"
        ) from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> StateDict:
    """`{'state_dict': sd}`, `{'model': sd}` or a bare state dict -> sd."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path}: expected a state dict (or {{'state_dict': ...}}), got {type(obj).__name__}")
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: expected a state dict of tensors or {{'state_dict': ...}} / {{'model': ...}}; "
                         f"these entries are not tensors: {_fmt(not_tensors)}")
    return {str(k): v for k, v in obj.items()}


def _read_safetensors(files: list[Path]) -> StateDict:
    from safetensors.torch import load_file

    sd: StateDict = {}
    for f in files:
        try:
            sd.update(load_file(str(f), device="cpu"))
        except Exception as e:  # safetensors raises its own SafetensorError
            raise ValueError(f"{f}: not a readable safetensors file ({e})") from e
    return sd


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable JSON ({e})") from e


def _read_hf_folder(folder: Path) -> tuple[StateDict, dict]:
    """A `save_pretrained` folder: config.json + model.safetensors (or shards, or pytorch_model.bin)."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{folder}: a checkpoint folder must be a Hugging Face VitPose folder with config.json "
                         "and model.safetensors; config.json is missing")
    config = _read_json(config_file)
    if (folder / "model.safetensors").is_file():
        return _read_safetensors([folder / "model.safetensors"]), config
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        return _read_safetensors([folder / s for s in shards]), config
    if (folder / "pytorch_model.bin").is_file():
        return _read_torch_file(folder / "pytorch_model.bin"), config
    raise ValueError(f"{folder}: no weights found (expected model.safetensors, model.safetensors.index.json "
                     "or pytorch_model.bin next to config.json)")


def _hf_config_hints(cfg: dict, path: Path) -> dict:
    """What config.json tells that the shapes do not: heads, LayerNorm eps, input size."""
    if cfg.get("model_type", "vitpose") != "vitpose":
        raise ValueError(f"{path}: config.json has model_type {cfg.get('model_type')!r}, expected 'vitpose'")
    bb = cfg.get("backbone_config") or {}
    if bb.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{path}: hidden_act {bb['hidden_act']!r} is not supported (ViTPose uses exact 'gelu')")
    if cfg.get("scale_factor", 4) != 4:
        raise ValueError(f"{path}: scale_factor {cfg['scale_factor']} is not supported (ViTPose upsamples by 4)")
    image_size = bb.get("image_size", (256, 192))
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    return {
        "num_heads": int(bb.get("num_attention_heads", 12)),
        "layer_norm_eps": float(bb.get("layer_norm_eps", HF_DEFAULT_LAYER_NORM_EPS)),
        "input_size": (int(image_size[0]), int(image_size[1])),
    }


# --------------------------------------------------------------------------------------------
# format adapters: everything -> official key names


def _strip_prefix(sd: StateDict, prefix: str) -> StateDict:
    return {k.removeprefix(prefix): v for k, v in sd.items()}


def _detect_format(sd: StateDict) -> str:
    if any(k.startswith(("backbone.embeddings.", "backbone.encoder.", "head.")) for k in sd):
        return "hf"
    if any(k.startswith(("backbone.patch_embed.", "backbone.blocks.", "keypoint_head.")) for k in sd):
        return "official"
    raise ValueError(
        f"unrecognized checkpoint layout (keys such as {_fmt(sorted(sd), 5)}); expected official ViTPose names "
        "(backbone.blocks.*, keypoint_head.*) or Hugging Face VitPose names (backbone.encoder.layer.*, head.*)"
    )


def _from_official(sd: StateDict) -> StateDict:
    """Official ViTPose and easy_ViTPose: our names already; the unused class token is dropped."""
    sd.pop("backbone.cls_token", None)
    return sd


# The one table between our (= the official) names and Hugging Face transformers' VitPose names,
# read in both directions (`_from_hf`, `to_hf_state_dict`). A name ending in "." is a prefix, any
# other a whole key; "{i}" is a block index. The fused qkv is the one entry that is not a rename.
HF_KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("backbone.patch_embed.proj.", "backbone.embeddings.patch_embeddings.projection."),
    ("backbone.pos_embed", "backbone.embeddings.position_embeddings"),
    ("backbone.blocks.{i}.attn.proj.", "backbone.encoder.layer.{i}.attention.output.dense."),
    ("backbone.blocks.{i}.norm1.", "backbone.encoder.layer.{i}.layernorm_before."),
    ("backbone.blocks.{i}.norm2.", "backbone.encoder.layer.{i}.layernorm_after."),
    ("backbone.blocks.{i}.mlp.", "backbone.encoder.layer.{i}.mlp."),  # fc1, fc2, experts.{j}
    ("backbone.last_norm.", "backbone.layernorm."),
    ("keypoint_head.final_layer.", "head.conv."),  # both decoders call the last conv "conv"
    ("keypoint_head.deconv_layers.0.", "head.deconv1."),
    ("keypoint_head.deconv_layers.1.", "head.batchnorm1."),
    ("keypoint_head.deconv_layers.3.", "head.deconv2."),
    ("keypoint_head.deconv_layers.4.", "head.batchnorm2."),
)
# ours: one fused (3D, D) qkv Linear; HF: query, key, value Linears, stacked in that order
HF_QKV = ("backbone.blocks.{i}.attn.qkv.", "backbone.encoder.layer.{i}.attention.attention.{part}.")
_QKV_PARTS = ("query", "key", "value")


def _name_pattern(name: str) -> re.Pattern[str]:
    body = re.escape(name).replace(re.escape("{i}"), r"(?P<i>\d+)").replace(re.escape("{part}"), r"(?P<part>\w+)")
    return re.compile("^" + body + ("" if name.endswith(".") else "$"))


_HF_RENAMES = [(_name_pattern(ours), _name_pattern(hf), ours, hf) for ours, hf in HF_KEY_TABLE]
_QKV_OURS, _QKV_HF = _name_pattern(HF_QKV[0]), _name_pattern(HF_QKV[1])


def _rename(key: str, to_hf: bool) -> str | None:
    """`key` through HF_KEY_TABLE in one direction; None when no row matches."""
    for ours_re, hf_re, ours, hf in _HF_RENAMES:
        m = (ours_re if to_hf else hf_re).match(key)
        if m:
            target = hf if to_hf else ours
            return target.replace("{i}", m.groupdict().get("i") or "") + key[m.end():]
    return None


def _from_hf(sd: StateDict) -> StateDict:
    """transformers VitPoseForPoseEstimation -> official names; query/key/value -> fused qkv."""
    out: StateDict = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        m = _QKV_HF.match(key)
        if m and m.group("part") in _QKV_PARTS and key[m.end():] in ("weight", "bias"):
            qkv.setdefault((m.group("i"), key[m.end():]), {})[m.group("part")] = value
            continue
        out[_rename(key, to_hf=False) or key] = value
    for (layer, kind), parts in qkv.items():
        absent = [p for p in _QKV_PARTS if p not in parts]
        if absent:
            raise ValueError(f"layer {layer}: attention {kind} has no {', '.join(absent)} tensor")
        out[HF_QKV[0].format(i=layer) + kind] = torch.cat([parts[p] for p in _QKV_PARTS])
    return out


def to_hf_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our (official) names -> transformers VitPoseForPoseEstimation names, through the same
    HF_KEY_TABLE that loading HF checkpoints reads the other way (the fused qkv is split into query,
    key, value).

    Raises:
        ValueError: a key with no transformers name.
    """
    out: StateDict = {}
    for key, value in state_dict.items():
        m = _QKV_OURS.match(key)
        if m:
            for part, chunk in zip(_QKV_PARTS, value.chunk(3, dim=0)):
                out[HF_QKV[1].format(i=m.group("i"), part=part) + key[m.end():]] = chunk
            continue
        new = _rename(key, to_hf=True)
        if new is None:
            raise ValueError(f"no transformers name for {key}")
        out[new] = value
    return out


_EXPERT = re.compile(r"\.mlp\.experts\.(\d+)\.")
_ASSOC_HEAD = re.compile(r"^associate_keypoint_heads\.(\d+)\.")


def _dataset_name(i: int) -> str:
    return DATASETS[i] if i < len(DATASETS) else f"dataset {i}"


def _select_expert(sd: StateDict, expert: int | None) -> StateDict:
    """ViTPose++: fold expert `expert` into fc2 and move its keypoint head to `keypoint_head`.

    The MoE MLP computes cat([fc2(h), experts[i](h)], -1), i.e. one Linear whose weight and bias
    are fc2's and the expert's stacked along the output dimension, so the fold is exact. The
    official checkpoints keep dataset 0's head in `keypoint_head` and dataset j+1's in
    `associate_keypoint_heads.{j}`; Hugging Face ones keep only dataset 0's.
    """
    experts, heads = moe_layout(sd)
    if not experts and len(heads) == 1:
        if expert not in (None, 0):
            raise ValueError(f"expert={expert} was asked for, but this is a plain (single-dataset) checkpoint "
                             "without ViTPose++ experts; drop expert=")
        return sd
    if expert is None:
        if experts:
            raise ValueError(_moe_message(sd, experts, heads))
        log.info("checkpoint has %d extra keypoint heads (%s); using keypoint_head (dataset 0); pick another with "
                 "expert=", len(heads) - 1, ", ".join(_dataset_name(i) for i in heads[1:]))
        expert = 0
    if (experts and expert not in experts) or (not experts and expert not in heads):
        valid = experts or heads
        raise ValueError(f"expert={expert} is not in this checkpoint; available: "
                         + ", ".join(f"{i} ({_dataset_name(i)})" for i in valid))

    out: StateDict = {}
    for key, value in sd.items():
        if _EXPERT.search(key) or _ASSOC_HEAD.match(key):
            continue
        if experts and re.search(r"\.mlp\.fc2\.(weight|bias)$", key):
            expert_key = key.replace(".mlp.fc2.", f".mlp.experts.{expert}.")
            if expert_key not in sd:
                raise ValueError(f"{key} has no matching {expert_key}")
            value = torch.cat([value, sd[expert_key]], dim=0)
        out[key] = value
    if expert != 0:
        if expert in heads:
            prefix = f"associate_keypoint_heads.{expert - 1}."
            out = {k: v for k, v in out.items() if not k.startswith("keypoint_head.")}
            out.update({"keypoint_head." + k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
        else:
            log.warning("expert=%d (%s): the checkpoint holds a single keypoint head, which is used with this "
                        "expert; make sure it was trained for this dataset (Hugging Face ViTPose++ checkpoints "
                        "keep only the COCO head)", expert, _dataset_name(expert))
    return out


def _moe_message(sd: StateDict, experts: list[int], heads: list[int]) -> str:
    def k_of(i: int) -> str:
        prefix = "keypoint_head." if i == 0 else f"associate_keypoint_heads.{i - 1}."
        w = sd.get(prefix + "final_layer.weight")
        return f", {w.shape[0]} keypoints" if w is not None and i in heads else ""

    available = "; ".join(f"expert={i}: {_dataset_name(i)}{k_of(i)}" for i in experts)
    single = "" if len(heads) > 1 else (" The checkpoint holds a single keypoint head (dataset 0's), "
                                        "used whichever expert is chosen.")
    return (
        f"this is a ViTPose++ mixture-of-experts checkpoint with {len(experts)} experts; choose the dataset "
        f"to run, e.g. load_model(path, dataset='coco') or load_model(path, expert=0) "
        f"(the CLI's --dataset / --expert). "
        f"Available: {available}. "
        f"(Official dataset order: {', '.join(DATASETS)}.){single} Alternatively split it into plain "
        "per-dataset checkpoints with the official ViTPose tools/model_split.py."
    )


# --------------------------------------------------------------------------------------------
# shape inference and the strict load


_BLOCK = re.compile(r"^backbone\.blocks\.(\d+)\.")


def _need(sd: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in sd:
        raise ValueError(f"the checkpoint has no {key!r}; it does not look like a ViTPose checkpoint "
                         f"(keys such as {_fmt(sorted(sd), 5)})")
    return sd[key]


def _shape_facts(sd: Mapping[str, torch.Tensor]) -> dict:
    """Everything the shapes of an official-named state dict tell about the architecture."""
    proj = _need(sd, "backbone.patch_embed.proj.weight")  # (D, 3, p, p)
    pos = _need(sd, "backbone.pos_embed")  # (1, 1 + T, D)
    final = _need(sd, "keypoint_head.final_layer.weight")  # (K, C_in, k, k)
    blocks = sorted({int(m.group(1)) for k in sd if (m := _BLOCK.match(k))})
    fc1 = next((sd[k] for i in blocks if (k := f"backbone.blocks.{i}.mlp.fc1.weight") in sd), None)  # (hidden, D)
    if fc1 is None:
        raise ValueError("the checkpoint has no transformer block with an mlp.fc1.weight")
    embed_dim = int(proj.shape[0])
    depth = 1 + blocks[-1]
    if proj.shape[-1] != proj.shape[-2]:
        raise ValueError(f"non-square patches {tuple(proj.shape[-2:])} are not supported")
    ratio = fc1.shape[0] / embed_dim
    if "keypoint_head.deconv_layers.0.weight" in sd:
        decoder, kernel = "classic", 1
        deconv_channels = int(sd["keypoint_head.deconv_layers.0.weight"].shape[1])  # (D, 256, 4, 4)
    else:
        decoder, kernel, deconv_channels = "simple", 3, 256
    if final.shape[-1] != kernel:
        raise ValueError(f"a {decoder} decoder needs a {kernel}x{kernel} final conv, the checkpoint has "
                         f"{final.shape[-2]}x{final.shape[-1]}")
    return {
        "embed_dim": embed_dim,
        "depth": depth,
        "patch_size": int(proj.shape[-1]),
        "num_patches": int(pos.shape[1]) - 1,
        "mlp_ratio": int(ratio) if ratio == int(ratio) else ratio,
        "qkv_bias": any(k.endswith(".attn.qkv.bias") for k in sd),
        "decoder": decoder,
        "num_keypoints": int(final.shape[0]),
        "deconv_channels": deconv_channels,
    }


def _fmt(items: list[str], limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _load_state_dict_strict(model: ViTPose, sd: StateDict) -> None:
    """Check names and shapes of `sd` against `model`, then load it (tensors are assigned, FP32).

    Raises:
        ValueError: naming the missing keys, unexpected keys and mismatched shapes. Only a missing
            BatchNorm `num_batches_tracked` (unused at inference) is tolerated.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k} (checkpoint {tuple(sd[k].shape)}, model {tuple(expected[k].shape)})"
                  for k in sd if k in expected and sd[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = [f"{name} ({len(keys)}): {_fmt(keys)}" for name, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("mismatched shapes", mismatched))
                 if keys]
        raise ValueError(f"the checkpoint does not fit {model.config.variant} ({model.config.decoder} decoder, "
                         f"{model.config.num_keypoints} keypoints): " + "; ".join(parts))
    tensors = {}
    for k, ref in expected.items():
        value = sd.get(k)
        if value is None:  # num_batches_tracked
            value = torch.zeros((), dtype=ref.dtype)
        tensors[k] = value.to(device="cpu", dtype=ref.dtype).contiguous()
    model.load_state_dict(tensors, strict=True, assign=True)


__all__ = ["DATASETS", "HF_KEY_TABLE", "convert_state_dict", "infer_config", "load_model", "moe_layout",
           "read_checkpoint", "to_hf_state_dict"]
