"""What every backbone kind infers once: the two endpoint images, their checks, their post-processing.
Imports torch, ifcsr.blend, ifcsr.errors and (lazily) ifcsr.losses / ifcsr.risk for the edge helpers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .blend import blend
from .errors import InputError


def finite_endpoints(images, adapters) -> tuple:
    """Refuse NaN/inf endpoints, naming the adapter that produced them (a corrupt adapter file
    used to give an all-NaN fidelity image without a word)."""
    from .errors import NonFiniteError

    for img, name in zip(images, adapters):
        if not bool(torch.isfinite(img).all()):
            bad = (~torch.isfinite(img)).float().mean().item()
            raise NonFiniteError(
                f"the {name} adapter produced NaN or infinite pixels ({bad:.1%} of the image): its weights are "
                "corrupt or diverged. Reload the checkpoint (IFCSR.load checks each file's sha256) or retrain")
    return tuple(images)


def clamp_halos(realism: torch.Tensor, fidelity: torch.Tensor, window: int = 5, edges: float = 0.9) -> torch.Tensor:
    """The realism endpoint with its halos clamped away (`ModelConfig.antiring`).

    Near the fidelity endpoint's edges (`ifcsr.losses.edge_mask`: luma gradient at or above its
    `edges` quantile per image, dilated 7 px; the neighbourhoods `halo_score` measures, found on
    the fidelity endpoint since HR is unknown at inference), each channel of `realism` is clamped
    to the fidelity endpoint's local [min, max] over `window` px. A halo is an excursion beyond
    both sides of an edge, so it goes; the edge's contrast inside that range and all texture away
    from edges stay. The classic anti-ringing clamp of image resamplers, with the fidelity
    endpoint (halo-free: it is trained for distortion) as the reference instead of the source pixels.
    (B, 3, H, W) in, same out; no network call."""
    from .losses import edge_mask, local_range

    if realism.shape != fidelity.shape or realism.dim() != 4:
        raise InputError(f"clamp_halos needs two (B, 3, H, W) endpoints of one shape, got {tuple(realism.shape)} "
                         f"and {tuple(fidelity.shape)}")
    if window < 3 or window % 2 == 0:
        raise InputError(f"clamp_halos: window must be an odd number of at least 3 px, got {window}")
    ref = fidelity.float()
    lo, hi = local_range(ref, window)
    near = edge_mask(ref, edges)
    x = realism.float()
    return torch.where(near, torch.minimum(torch.maximum(x, lo), hi), x).to(realism.dtype)


@dataclass
class Endpoints:
    """The two endpoint images, inferred once. `blend(gamma)` costs no network call."""
    fidelity: torch.Tensor  # (B, 3, H, W) in [0, 1]
    realism: torch.Tensor   # (B, 3, H, W) in [0, 1]

    def blend(self, gamma, **kwargs) -> torch.Tensor:
        return blend(self.fidelity, self.realism, gamma, **kwargs)

    def ghosting_risk(self, **kwargs) -> torch.Tensor:
        """(B, 1, H, W) map in [0, 1] of where the endpoints disagree in structure
        (``ifcsr.risk.ghosting_risk``); no HR, no network call."""
        from .risk import ghosting_risk

        return ghosting_risk(self.fidelity, self.realism, **kwargs)

    def risk_aware_blend(self, mean_gamma: float, *, strength: float = 1.0, risk=None) -> torch.Tensor:
        """Blend with a gamma map of mean `mean_gamma` that stays lower where the ghosting risk is
        high (``ifcsr.risk.risk_aware_gamma``); pass `risk` to reuse a computed map."""
        from .risk import risk_aware_gamma

        risk = self.ghosting_risk() if risk is None else risk
        return self.blend(risk_aware_gamma(risk, mean_gamma, strength=strength))


