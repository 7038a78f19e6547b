"""Optional adversarial realism term of stage 2 (off by default: the paper has no GAN loss).

The tiny backbone has no generative prior, so the paper's deep-feature weighting alone only
sharpens and streaks (issue 13). ESRGAN-style adversarial training is the classic way to get
realism without such a prior; ESRGAN's network interpolation is the ancestor of IFCSR's blend.
With four training photos a plain patch discriminator learns almost nothing, so this one is
"projected" (Sauer et al., Projected GANs, NeurIPS 2021): a FROZEN pretrained VGG16 trunk
(the HED weights the losses already use, `ifcsr.weights.hed`) with small trainable spectral-norm heads
on a few of its layers. Both inputs go through DiffAugment (Zhao et al., NeurIPS 2020) and the
hinge loss (SNGAN / BigGAN); an R1 penalty (Mescheder et al. 2018) is optional.

Imports: torch, ifcsr.config and ifcsr.weights.hed only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .config import ADV_AUGMENTS as AUGMENTS
from .weights.hed import CAFFE_BGR_MEAN, LAYER_NAMES, LAYER_TAPS, load_hed_vgg16, normalize_tensor


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], g: torch.Generator) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020, DiffAugment_pytorch.py): differentiable colour, translation
    and cutout, drawn per sample from `g`. Applied to real AND fake, so D cannot tell them apart
    by the augmentation; differentiable, so G's gradient flows through it."""
    B, _, H, W = x.shape

    def rand(*shape):
        return torch.rand(*shape, generator=g).to(x.device, x.dtype)

    for name in policy:
        if name == "color":
            x = x + (rand(B, 1, 1, 1) - 0.5)  # brightness
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (rand(B, 1, 1, 1) * 2) + mean  # saturation
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * (rand(B, 1, 1, 1) + 0.5) + mean  # contrast
        elif name == "translation":
            # shift by up to 1/8 of the size, zero-padded (DiffAugment's ratio)
            sx, sy = int(H * 0.125 + 0.5), int(W * 0.125 + 0.5)
            tx = torch.randint(-sx, sx + 1, (B,), generator=g)
            ty = torch.randint(-sy, sy + 1, (B,), generator=g)
            pad = F.pad(x, (sy, sy, sx, sx))
            x = torch.stack([pad[b, :, sx + int(tx[b]): sx + int(tx[b]) + H, sy + int(ty[b]): sy + int(ty[b]) + W]
                             for b in range(B)])
        elif name == "cutout":
            ch, cw = int(H * 0.5 + 0.5), int(W * 0.5 + 0.5)  # DiffAugment's cutout ratio 0.5
            cx = torch.randint(0, H + (1 - ch % 2), (B,), generator=g)
            cy = torch.randint(0, W + (1 - cw % 2), (B,), generator=g)
            mask = torch.ones(B, 1, H, W, device=x.device, dtype=x.dtype)
            for b in range(B):
                x0, y0 = max(int(cx[b]) - ch // 2, 0), max(int(cy[b]) - cw // 2, 0)
                mask[b, :, x0: int(cx[b]) + ch - ch // 2, y0: int(cy[b]) + cw - cw // 2] = 0
            x = x * mask
        else:
            raise ValueError(f"unknown augmentation {name!r}; choose from {AUGMENTS}")
    return x


class ProjectedDiscriminator(nn.Module):
    """Patch discriminator on frozen HED-VGG16 features: one small trainable head per tap.

    forward(x) with x in [0, 1], (B, 3, H, W) -> list of patch-logit maps (B, 1, h_l, w_l), one
    per tap. Only the heads are trainable and only they are in `heads_state_dict()`: the trunk
    is a fixed instrument reloaded from the HED weight file.
    """

    def __init__(self, taps: tuple[str, ...] = ("relu2_2", "relu3_3", "relu4_3"), channels: int = 64,
                 trunk: nn.Sequential | None = None):
        super().__init__()
        bad = [t for t in taps if t not in LAYER_NAMES]
        if bad or not taps:
            raise ValueError(f"taps must be a non-empty subset of {LAYER_NAMES}, got {taps}")
        self.taps = tuple(sorted(taps, key=LAYER_NAMES.index))
        self.tap_index = [LAYER_TAPS[LAYER_NAMES.index(t)] for t in self.taps]
        trunk = load_hed_vgg16() if trunk is None else trunk
        self.trunk = trunk[: self.tap_index[-1] + 1]
        self.trunk.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False)
        in_ch = {"relu1_2": 64, "relu2_2": 128, "relu3_3": 256, "relu4_3": 512, "relu5_3": 512}
        # Spectral norm keeps each head 1-Lipschitz (SNGAN; Real-ESRGAN's U-Net D uses it too).
        self.heads = nn.ModuleList(
            nn.Sequential(
                spectral_norm(nn.Conv2d(in_ch[t], channels, 3, padding=1)),
                nn.LeakyReLU(0.2),
                spectral_norm(nn.Conv2d(channels, channels, 3, padding=1)),
                nn.LeakyReLU(0.2),
                spectral_norm(nn.Conv2d(channels, 1, 1)),
            )
            for t in self.taps
        )

    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk.eval()  # frozen features, always in eval mode
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = x.flip(1) * 255.0 - self.mean  # caffe_preprocess (RGB [0,1] -> BGR, minus the mean)
        out = []
        for i, layer in enumerate(self.trunk):
            h = layer(h)
            if i in self.tap_index:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"discriminator input must be (B, 3, H, W), got {tuple(x.shape)}")
        # Caffe-scale VGG activations reach the hundreds (initial logits of +-4, hinge loss 20):
        # unit length along channels (lpips.normalize_tensor), times sqrt(C) for O(1) entries.
        return [head(normalize_tensor(f) * f.shape[1] ** 0.5)
                for head, f in zip(self.heads, self.features(x), strict=True)]

    def heads_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable part (and spectral norm's power-iteration vectors), for safetensors."""
        return {f"heads.{k}": v.detach().clone().contiguous() for k, v in self.heads.state_dict().items()}

    def load_heads_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        heads = {k[len("heads."):]: v for k, v in state.items() if k.startswith("heads.")}
        missing = set(self.heads.state_dict()) - set(heads)
        if missing or len(heads) != len(state):
            raise ValueError(f"discriminator state does not match its heads: missing {sorted(missing)[:3]}, "
                             f"unexpected {sorted(set(state) - {'heads.' + k for k in self.heads.state_dict()})[:3]}")
        own = self.heads.state_dict()
        shapes = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in heads.items() if v.shape != own[k].shape]
        if shapes:
            raise ValueError(f"discriminator state does not match its heads (saved vs configured shape): "
                             f"{shapes[0]} (adv_channels or adv_taps changed?)")
        self.heads.load_state_dict(heads)


def d_hinge_loss(logits_real: list[torch.Tensor], logits_fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of D (Lim & Ye 2017; SNGAN), mean over patches, summed over heads."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(logits_real, logits_fake, strict=True))


def g_hinge_loss(logits_fake: list[torch.Tensor]) -> torch.Tensor:
    """Generator's hinge loss -E[D(G(x))], summed over heads."""
    return sum(-f.mean() for f in logits_fake)


def r1_penalty(disc: ProjectedDiscriminator, real: torch.Tensor) -> torch.Tensor:
    """R1 = E ||grad_x D(x)||^2 on real images (Mescheder et al. 2018), summed over heads."""
    real = real.detach().requires_grad_(True)
    out = sum(o.sum() for o in disc(real))
    (grad,) = torch.autograd.grad(out, real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
