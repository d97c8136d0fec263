"""ViTPose in one readable file: a plain ViT backbone and a heatmap decoder.

The layout follows the official ViTPose (ViTAE-Transformer/ViTPose, an mmpose fork) so that an
official checkpoint loads without renaming a single key:

    backbone.patch_embed.proj                 Conv2d(3, D, 16, stride 16, padding 2) -> 16x12 tokens
    backbone.pos_embed                        [1, 1 + 16*12, D] (slot 0 is the unused class token's)
    backbone.blocks.{i}.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2
    backbone.last_norm
    keypoint_head.deconv_layers.{0,1,3,4}     classic decoder: 2 x (ConvTranspose2d, BatchNorm2d, ReLU)
    keypoint_head.final_layer                 Conv2d(256, K, 1) (classic) or Conv2d(D, K, 3) (simple)

Input: (N, 3, 256, 192) RGB crops normalized with the ImageNet mean/std. Output: (N, K, 64, 48)
heatmaps. Shapes in comments use B = batch, T = tokens (16*12 = 192), C = D = embed dim,
nh = heads, hs = head size, Hp x Wp = token grid (16 x 12), K = keypoints.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

DECODERS = ("classic", "simple")
PATCH_PADDING = 2  # the official PatchEmbed pads by 4 + 2 * (ratio // 2 - 1) = 2 for ratio 1


@dataclass
class ViTPoseConfig:
    """Architecture hyper-parameters of a ViTPose model.

    Attributes:
        variant: a name for the size, e.g. "vitpose-b" (informational).
        embed_dim: token width D.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width as a multiple of D.
        patch_size: square patch size of the patch embedding.
        input_size: (H, W) of the input crop.
        decoder: "classic" (two deconvolutions + 1x1 conv) or "simple" (bilinear x4 + 3x3 conv).
        num_keypoints: K, the number of heatmaps.
        deconv_channels: channels of the classic decoder's deconvolutions.
        layer_norm_eps: epsilon of every LayerNorm.
        qkv_bias: whether the fused qkv projection has a bias.
    """

    variant: str = "vitpose-b"
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4
    patch_size: int = 16
    input_size: tuple[int, int] = (256, 192)
    decoder: str = "classic"
    num_keypoints: int = 17
    deconv_channels: int = 256
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.num_keypoints < 1:
            raise ValueError(f"num_keypoints must be positive, got {self.num_keypoints}")
        if min(self.grid_size) < 1:
            raise ValueError(f"input_size {self.input_size} is too small for patch_size {self.patch_size}")

    @property
    def grid_size(self) -> tuple[int, int]:
        """(Hp, Wp): the token grid, e.g. (16, 12) for 256x192 crops (Conv2d output size)."""
        h, w = self.input_size
        p = self.patch_size
        return (h + 2 * PATCH_PADDING - p) // p + 1, (w + 2 * PATCH_PADDING - p) // p + 1

    @property
    def num_patches(self) -> int:
        """T, the number of tokens."""
        return self.grid_size[0] * self.grid_size[1]

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(h, w) of the output heatmaps: 4x the token grid, e.g. (64, 48)."""
        return 4 * self.grid_size[0], 4 * self.grid_size[1]


# name -> (embed_dim, depth, num_heads), as in the official ViTPose configs
VARIANTS: dict[str, tuple[int, int, int]] = {
    "vitpose-s": (384, 12, 12),
    "vitpose-b": (768, 12, 12),
    "vitpose-l": (1024, 24, 16),
    "vitpose-h": (1280, 32, 16),
}
_ALIASES = {"s": "vitpose-s", "small": "vitpose-s", "b": "vitpose-b", "base": "vitpose-b",
            "l": "vitpose-l", "large": "vitpose-l", "h": "vitpose-h", "huge": "vitpose-h"}


def canonical_variant(variant: str) -> str:
    """Map "b", "Base", "ViTPose-B", ... to the canonical name ("vitpose-b").

    Raises:
        ValueError: unknown name; the message lists the valid choices.
    """
    key = str(variant).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in VARIANTS:
        choices = ", ".join(list(VARIANTS) + sorted(_ALIASES))
        raise ValueError(f"unknown ViTPose variant {variant!r}; valid choices: {choices}")
    return key


def config_for(variant: str, decoder: str = "classic", num_keypoints: int = 17) -> ViTPoseConfig:
    """The config of a standard ViTPose size.

    Args:
        variant: "vitpose-s/b/l/h", "s/b/l/h" or "small/base/large/huge" (any case).
        decoder: "classic" or "simple".
        num_keypoints: K (17 for COCO).

    Returns:
        The ViTPoseConfig for 256x192 crops.

    Raises:
        ValueError: unknown variant or decoder.
    """
    name = canonical_variant(variant)
    embed_dim, depth, num_heads = VARIANTS[name]
    return ViTPoseConfig(variant=name, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                         decoder=decoder, num_keypoints=num_keypoints)


class PatchEmbed(nn.Module):
    """Non-overlapping 16x16 patches (padded by 2) projected to D channels."""

    def __init__(self, config: ViTPoseConfig) -> None:
        super().__init__()
        p = config.patch_size
        self.proj = nn.Conv2d(3, config.embed_dim, kernel_size=p, stride=p, padding=PATCH_PADDING)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image -> (B, T, C) tokens."""
        x = self.proj(x)  # (B, C, Hp, Wp)
        return x.flatten(2).transpose(1, 2)  # (B, T, C)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(self, config: ViTPoseConfig) -> None:
        super().__init__()
        self.num_tokens = config.num_patches  # T is fixed by the input size; only B is dynamic
        self.num_heads = config.num_heads
        self.head_dim = config.embed_dim // config.num_heads
        self.qkv = nn.Linear(config.embed_dim, 3 * config.embed_dim, bias=config.qkv_bias)
        self.proj = nn.Linear(config.embed_dim, config.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        T, nh, hs = self.num_tokens, self.num_heads, self.head_dim
        qkv = self.qkv(x)  # (B, T, 3C)
        qkv = qkv.reshape(-1, T, 3, nh, hs)  # (B, T, 3, nh, hs); -1 keeps B symbolic in ONNX
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, nh, T, hs)
        # softmax(q k^T * hs**-0.5) v, the scale the official model uses
        y = F.scaled_dot_product_attention(q, k, v, scale=hs**-0.5)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(-1, T, nh * hs)  # (B, T, C)
        return self.proj(y)  # (B, T, C)


class Mlp(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2."""

    def __init__(self, config: ViTPoseConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.embed_dim, config.mlp_hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(config.mlp_hidden_dim, config.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        x = self.act(self.fc1(x))  # (B, T, 4C)
        return self.fc2(x)  # (B, T, C)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, config: ViTPoseConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        x = x + self.attn(self.norm1(x))  # (B, T, C)
        x = x + self.mlp(self.norm2(x))  # (B, T, C)
        return x


class ViTBackbone(nn.Module):
    """The official ViTPose ViT: patch embedding, learned positions, blocks, final LayerNorm."""

    def __init__(self, config: ViTPoseConfig) -> None:
        super().__init__()
        self.grid_size = config.grid_size
        self.embed_dim = config.embed_dim
        self.patch_embed = PatchEmbed(config)
        # 1 + T positions: the pre-training class token's slot is kept and added to every token
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.num_patches, config.embed_dim))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.last_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image -> (B, C, Hp, Wp) feature map."""
        x = self.patch_embed(x)  # (B, T, C)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]  # (B, T, C), same order as the official
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        x = self.last_norm(x)  # (B, T, C)
        return x.transpose(1, 2).reshape(-1, self.embed_dim, *self.grid_size)  # (B, C, Hp, Wp)


class ClassicDecoder(nn.Module):
    """Two stride-2 deconvolutions (x4 upsampling) with BatchNorm + ReLU, then a 1x1 conv."""

    def __init__(self, config: ViTPoseConfig) -> None:
        super().__init__()
        c = config.deconv_channels
        self.deconv_layers = nn.Sequential(
            nn.ConvTranspose2d(config.embed_dim, c, 4, stride=2, padding=1, output_padding=0, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, output_padding=0, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.final_layer = nn.Conv2d(c, config.num_keypoints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, Hp, Wp) -> (B, K, 4Hp, 4Wp)."""
        x = self.deconv_layers(x)  # (B, 256, 4Hp, 4Wp)
        return self.final_layer(x)  # (B, K, 4Hp, 4Wp)


class SimpleDecoder(nn.Module):
    """ReLU, bilinear x4 upsampling, then a 3x3 conv (ViTPose's "simple" head)."""

    def __init__(self, config: ViTPoseConfig) -> None:
        super().__init__()
        self.final_layer = nn.Conv2d(config.embed_dim, config.num_keypoints, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, Hp, Wp) -> (B, K, 4Hp, 4Wp)."""
        x = F.relu(x)  # (B, C, Hp, Wp)
        x = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)  # (B, C, 4Hp, 4Wp)
        return self.final_layer(x)  # (B, K, 4Hp, 4Wp)


class ViTPose(nn.Module):
    """ViTPose: ViT backbone + heatmap decoder.

    Args:
        config: the architecture; see `config_for` for the standard sizes.

    Attributes:
        config: the ViTPoseConfig it was built from.
        random_weights: True when the weights are the fixed-seed random ones rather than a
            trained checkpoint (set by `build_random_model`).
        dataset: the name of the keypoint dataset its head was trained on (`vitpose_trt.datasets`),
            set by `load_model`; None when unknown (or only guessed from K: 17 is taken as COCO).
    """

    def __init__(self, config: ViTPoseConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ViTPoseConfig()
        self.random_weights: bool = False
        self.dataset: str | None = None
        self.backbone = ViTBackbone(self.config)
        decoder = ClassicDecoder if self.config.decoder == "classic" else SimpleDecoder
        self.keypoint_head = decoder(self.config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random initialization as in the official training code: N(0, 0.02) ViT weights (the
        official trunc_normal_(std=0.02) truncates at +-2, i.e. 100 sigma: a plain normal, drawn
        faster), N(0, 0.001) decoder convolutions. Sets every tensor (also after `to_empty`);
        skipped on the meta device."""
        if self.backbone.pos_embed.is_meta:
            return
        nn.init.normal_(self.backbone.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                if isinstance(m, nn.BatchNorm2d):
                    m.reset_running_stats()
            elif isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)) and m is not self.backbone.patch_embed.proj:
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        proj = self.backbone.patch_embed.proj  # like nn.Conv2d's default (kaiming-uniform fan-in)
        nn.init.kaiming_uniform_(proj.weight, a=math.sqrt(5))
        nn.init.zeros_(proj.bias)  # type: ignore[arg-type]  # (the conv has a bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Heatmaps of a batch of crops.

        Args:
            x: (N, 3, H, W) normalized RGB crops, (H, W) = config.input_size, e.g. 256x192.

        Returns:
            (N, K, H/4, W/4) heatmaps, e.g. (N, 17, 64, 48).
        """
        features = self.backbone(x)  # (B, C, Hp, Wp)
        return self.keypoint_head(features)  # (B, K, 4Hp, 4Wp)


# --------------------------------------------------------------------------------------------
# compute cost (next to the model, as nanoGPT keeps its FLOP estimate)


def count_macs(config: ViTPoseConfig, include_attention: bool = True) -> dict[str, int]:
    """Multiply-accumulates of one crop through the model, counted from the config.

    With T = Hp*Wp tokens (16*12 = 192 for 256x192), D = embed_dim, r = mlp_ratio, p = patch size,
    L = depth, K = keypoints, C = deconv channels (256):
        patch_embed   T * D * 3 * p^2                       (the 16x16 stride-16 conv)
        per block     qkv T*D*3D + proj T*D*D + mlp 2*T*D*rD = T*D^2*(4 + 2r)
                      attention q@k^T T*T*D + attn@v T*T*D   = 2*T^2*D
        classic head  deconv1 T*D*C*16 + deconv2 4T*C*C*16 + final 1x1 16T*C*K
        simple head   final 3x3 16T*D*K*9                   (the bilinear upsampling is not counted)
    FLOPs = 2 * MACs. Biases, LayerNorm, GELU, softmax, BatchNorm are not counted (they are
    O(T*D) per layer, well under 1%). ViTPose-B 256x192: 18.52 GMAC = 37.0 GFLOP per crop.

    Returns:
        {"patch_embed", "linear" (qkv+proj+mlp, all blocks), "attention" (q@k^T and attn@v, all
        blocks; 0 when not included), "head", "total"} in MACs.
    """
    T, D, L = config.num_patches, config.embed_dim, config.depth
    p, K = config.patch_size, config.num_keypoints
    hidden = config.mlp_hidden_dim
    patch = T * D * 3 * p * p
    linear = L * T * (3 * D * D + D * D + 2 * D * hidden)
    attention = L * 2 * T * T * D if include_attention else 0
    if config.decoder == "classic":
        c = config.deconv_channels
        head = T * D * c * 16 + 4 * T * c * c * 16 + 16 * T * c * K
    else:
        head = 16 * T * D * K * 9
    out = {"patch_embed": patch, "linear": linear, "attention": attention, "head": head}
    out["total"] = sum(out.values())
    return out


def model_flops(config: ViTPoseConfig) -> int:
    """FLOPs (2 x MACs) of one crop, see `count_macs`."""
    return 2 * count_macs(config)["total"]


# --------------------------------------------------------------------------------------------
# fixed-seed random weights (benchmarks and tests)


def build_random_model(variant: str | ViTPoseConfig = "b", decoder: str = "classic", num_keypoints: int = 17,
                       seed: int = 0) -> ViTPose:
    """A ViTPose with fixed-seed random weights, for benchmarks and tests (not for real poses).

    The global RNG state is left untouched. Sets `model.random_weights = True` and logs a warning.

    Args:
        variant: "s", "b", "l", "h" (any accepted spelling) or a ViTPoseConfig.
        decoder: "classic" or "simple" (ignored when `variant` is a ViTPoseConfig).
        num_keypoints: K (ignored when `variant` is a ViTPoseConfig).
        seed: the RNG seed; the same seed gives the same weights.
    """
    if isinstance(variant, ViTPoseConfig):
        config = variant
    else:
        config = config_for(variant, decoder=decoder, num_keypoints=num_keypoints)
    with torch.device("meta"):
        model = ViTPose(config)  # allocate once, initialize once (below)
    model.to_empty(device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.reset_parameters()
        _calibrate_output_scale(model)
    model.random_weights = True
    warn_random_weights(f"{config.variant} ({config.decoder} decoder, {config.num_keypoints} keypoints) has RANDOM "
                        f"weights (seed {seed}): not a trained model, its poses are meaningless")
    return model.eval()


_random_weights_warned = False


def warn_random_weights(message: str) -> None:
    """Say that random weights are in use (meaningless poses), once per process: the first place
    that notices logs `message` as a warning, every later one at debug level (a user running one
    command sees one such line, not one per layer that carries the model along)."""
    global _random_weights_warned
    log.log(logging.DEBUG if _random_weights_warned else logging.WARNING, "%s", message)
    _random_weights_warned = True


RANDOM_PEAK = 1.0  # heatmap maximum on the calibration crop, as a trained model (real crops: median ~0.6)


@torch.no_grad()
def _calibrate_output_scale(model: ViTPose) -> None:
    """Give random weights a trained model's output scale, so absolute tolerances mean something.

    Freshly initialized, the decoder's BatchNorm statistics (mean 0, var 1) do not match its tiny
    inputs and the heatmaps peak around 5e-5. One forward pass on a seeded crop (N(0, 1) values, like
    a normalized image) sets each BatchNorm's running statistics to those of its input, as training
    would, then scales the final convolution so the heatmaps peak at RANDOM_PEAK. The weights stay
    random: the peaks are where chance puts them.
    """
    crop = torch.randn(1, 3, *model.config.input_size)
    x = model.backbone(crop)
    head = model.keypoint_head
    for layer in getattr(head, "deconv_layers", ()):
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.copy_(x.mean(dim=(0, 2, 3)))
            layer.running_var.copy_(x.var(dim=(0, 2, 3)) + layer.eps)
        x = layer(x)
    if not hasattr(head, "deconv_layers"):  # the simple decoder: ReLU + x4 upsampling first
        x = F.interpolate(torch.relu(x), scale_factor=4, mode="bilinear", align_corners=False)
    peak = float(head.final_layer(x).abs().max())
    if peak > 0:
        head.final_layer.weight.mul_(RANDOM_PEAK / peak)
        head.final_layer.bias.mul_(RANDOM_PEAK / peak)


__all__ = ["DECODERS", "VARIANTS", "ViTPose", "ViTPoseConfig", "build_random_model", "canonical_variant", "config_for",
           "count_macs", "model_flops"]
