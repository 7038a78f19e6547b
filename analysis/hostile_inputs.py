"""A hostile classroom (issue 16): bad and edge inputs through the Python API and the CLI, each
classified by what the user gets:

    named      an ifcsr error (ifcsr.errors.IFCSRError) from the API, or the CLI's one-line error
               (exit status 2, no traceback; argparse's own usage errors count here too)
    converted  accepted, and the result checked to be what a user expects
    traceback  anything else raised by the API, or the CLI's "internal error" path (exit 1) or an
               uncaught exception: a raw error the user cannot act on
    silent     accepted, but the result is wrong (its check failed) or it should have been refused
               (also: refused, but only after reading a file outside the checkpoint or writing outputs)
    hang       still running after the case's time limit (default CASE_TIMEOUT s), or returned after it

Every case runs on the bundled tiny checkpoint (or copies of it, corrupted on purpose), in
temporary folders; one case trains stage 2 for one step (`--fidelity-from` without ifcsr.json),
nothing else trains. Writes analysis/results/hostile_inputs.csv (one row per case: group, case,
expected, outcome, detail) and prints the counts per group and in total.

The groups from issue 28's re-count ("config range", "checkpoint range", "files", "trainer state
2", "cli recount", "silent-wrong", "paths") are built by `build_recount_cases`.

    python analysis/hostile_inputs.py            # about 3-6 minutes on 2 CPU cores
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results"
REFUSE = None  # a case whose only right answer is a named error
CASE_TIMEOUT = 60.0  # seconds: every case here takes under 5 (the one training case under 60) on 2 cores


@dataclass
class Case:
    group: str
    name: str
    run: Callable[[], object]
    check: Callable[[object], bool] | None = REFUSE  # None: must be refused; else: the result must pass
    timeout: float = CASE_TIMEOUT
    # Run in a forked child, killed at the time limit: for cases that may hang inside one long C
    # call (a pooling window of 10^9 px), which no signal interrupts in this process.
    isolate: bool = False


class Hang(BaseException):
    """Raised into a case that runs past its time limit. A BaseException, so that no library's
    `except Exception` (the CLI's internal-error handler) turns it into something else."""


def _on_alarm(signum, frame):
    raise Hang()


def classify(case: Case) -> tuple[str, str]:
    outcome, detail, elapsed = _run_forked(case) if case.isolate else _run_timed(case)
    if outcome != "hang" and elapsed > case.timeout:  # a C call that held the interpreter past the limit
        return "hang", f"took {elapsed:.0f} s (limit {case.timeout:.0f} s); {outcome}: {detail}"
    return outcome, detail


def _run_timed(case: Case) -> tuple[str, str, float]:
    t0 = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, case.timeout)
    try:
        outcome, detail = _classify(case)
    except Hang:
        outcome, detail = "hang", f"still running after {case.timeout:.0f} s (stopped)"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return outcome, detail, time.perf_counter() - t0


def _run_forked(case: Case) -> tuple[str, str, float]:
    """_classify(case) in a forked child; a child still running at the time limit is killed: "hang"."""
    import pickle
    import select

    t0 = time.perf_counter()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: classify, send the answer, leave without running the parent's cleanup
        os.close(r)
        try:
            payload = pickle.dumps(_classify(case))
        except BaseException as err:  # noqa: BLE001
            payload = pickle.dumps(("traceback", f"{type(err).__name__}: {str(err)[:160]}"))
        with os.fdopen(w, "wb") as f:
            f.write(payload)
        os._exit(0)
    os.close(w)
    ready, _, _ = select.select([r], [], [], case.timeout)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        return "hang", f"still running after {case.timeout:.0f} s (killed)", time.perf_counter() - t0
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        return "traceback", "the case's process died without an answer", time.perf_counter() - t0
    outcome, detail = pickle.loads(data)
    return outcome, detail, time.perf_counter() - t0


def _classify(case: Case) -> tuple[str, str]:
    from ifcsr.errors import IFCSRError

    try:
        result = case.run()
    except IFCSRError as err:
        return "named", f"{type(err).__name__}: {str(err)[:160]}"
    except Exception as err:  # noqa: BLE001 - the point is to see what escapes
        return "traceback", f"{type(err).__name__}: {str(err)[:160]}"
    if isinstance(result, CliResult):
        if result.code == 2 and "Traceback" not in result.err:
            return "named", result.err.strip().splitlines()[-1][:200] if result.err.strip() else "exit 2"
        if result.code not in (0, 2) or "Traceback" in result.err:
            return "traceback", (result.err.strip().splitlines() or ["?"])[-1][:200]
    if case.check is REFUSE:
        return "silent", f"accepted: {_short(result)}"
    try:
        ok = bool(case.check(result))
    except Exception as err:  # noqa: BLE001
        return "silent", f"check raised {type(err).__name__}: {err}"
    return ("converted", _short(result)) if ok else ("silent", f"wrong result: {_short(result)}")


def _short(x) -> str:
    if isinstance(x, (str, Wrote)):  # a case's own account of what went wrong
        return str(x)[:200]
    if isinstance(x, torch.Tensor):
        return f"tensor {tuple(x.shape)} {x.dtype}"
    if isinstance(x, np.ndarray):
        return f"array {x.shape} {x.dtype}"
    if isinstance(x, CliResult):
        return f"exit {x.code}"
    return type(x).__name__


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def cli(*argv) -> CliResult:
    """`ifcsr ARGV` in this process, capturing its output (argparse's SystemExit included)."""
    from ifcsr.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse: usage error (2) or --help (0)
            code = e.code if isinstance(e.code, int) else 2
    return CliResult(int(code), out.getvalue(), err.getvalue())


# --------------------------------------------------------------------------- fixtures


def make_files(d: Path) -> dict[str, Path]:
    """Image files in many modes, plus non-images."""
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    f = {}
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)

    def save(name, im, **kw):
        f[name] = d / name
        im.save(f[name], **kw)

    save("rgb.png", Image.fromarray(rgb))
    save("grey.png", Image.fromarray(rgb[..., 0]))
    rgba = np.dstack([rgb, np.where(np.arange(16)[:, None] < 8, 0, 255).repeat(16, 1).astype(np.uint8)])
    save("rgba.png", Image.fromarray(rgba, "RGBA"))
    save("la.png", Image.fromarray(rgba, "RGBA").convert("LA"))
    save("palette.png", Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=8))
    p = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=8)
    save("palette_transparent.png", p, transparency=int(np.asarray(p)[0, 0]))
    ramp16 = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 250)
    save("grey16.png", Image.fromarray(ramp16))
    save("int32_in_range.tif", Image.fromarray(ramp16.astype(np.int32), "I"))
    save("int32_out_of_range.tif", Image.fromarray((ramp16.astype(np.int32) * 100), "I"))
    fl = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    save("float01.tif", Image.fromarray(fl, "F"))
    save("float255.tif", Image.fromarray(fl * 255, "F"))
    fnan = fl.copy()
    fnan[3, 3] = np.nan
    save("float_nan.tif", Image.fromarray(fnan, "F"))
    save("bilevel.png", Image.fromarray(rgb[..., 0] > 127))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), quality=95)
    save("rgb.jpg", Image.fromarray(rgb), quality=95)
    save("rgb.bmp", Image.fromarray(rgb))
    save("rgb.tif", Image.fromarray(rgb))
    save("rgb.gif", Image.fromarray(rgb).convert("P"))
    save("rgb.webp", Image.fromarray(rgb), lossless=True)
    frames = [Image.fromarray(rgb).convert("P"), Image.fromarray(255 - rgb).convert("P")]
    f["animated.gif"] = d / "animated.gif"
    frames[0].save(f["animated.gif"], save_all=True, append_images=frames[1:])
    # EXIF orientations 1..8 on an asymmetric image, stored so that the viewer shows `shown`
    shown = np.zeros((8, 12, 3), np.uint8)
    shown[:4, :6] = 255  # white top-left quarter
    shown[6:, 9:, 0] = 200  # red bottom-right corner
    inverse = {1: None, 2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM,
               5: Image.TRANSPOSE, 6: Image.ROTATE_90, 7: Image.TRANSVERSE, 8: Image.ROTATE_270}
    for o, t in inverse.items():
        im = Image.fromarray(shown)
        raw = im if t is None else im.transpose(t)
        exif = raw.getexif()
        exif[0x0112] = o
        save(f"exif{o}.png", raw, exif=exif)
    f["_shown"] = shown
    good = (d / "rgb.png").read_bytes()
    (d / "truncated.png").write_bytes(good[: len(good) // 2])
    f["truncated.png"] = d / "truncated.png"
    (d / "empty.png").write_bytes(b"")
    f["empty.png"] = d / "empty.png"
    (d / "random.png").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    f["random.png"] = d / "random.png"
    (d / "text.png").write_text("this is not an image\n")
    f["text.png"] = d / "text.png"
    (d / "folder.png").mkdir()
    f["folder.png"] = d / "folder.png"
    f["missing.png"] = d / "missing.png"
    save("tiny2x2.png", Image.fromarray(rgb[:2, :2]))
    save("huge_header.png", Image.fromarray(np.zeros((64, 64, 3), np.uint8)))
    save("big1100.png", Image.fromarray(np.zeros((1100, 1100, 3), np.uint8)))
    (d / "a").mkdir()
    (d / "b").mkdir()
    save("a/x.png", Image.fromarray(rgb))
    save("b/x.png", Image.fromarray(255 - rgb))
    return f


def corrupt_copies(src: Path, d: Path) -> dict[str, Path]:
    """Copies of a checkpoint, each broken in one way (the manifest re-recorded where the point
    is to get past the sha256 check to the next one)."""
    from safetensors.torch import load_file, save_file

    from ifcsr.checkpoint import MANIFEST, write_manifest

    out = {}
    d.mkdir(parents=True, exist_ok=True)

    def copy(name):
        p = d / name
        shutil.copytree(src, p)
        out[name] = p
        return p

    def flip(p, rel, at=-5):
        b = bytearray((p / rel).read_bytes())
        b[at] ^= 0x01
        (p / rel).write_bytes(bytes(b))

    for rel in ("fidelity.safetensors", "realism.safetensors", "config.json", "ifcsr.json", "history.json",
                "backbone/unet/diffusion_pytorch_model.safetensors", "backbone/vae/diffusion_pytorch_model.safetensors",
                "backbone/empty_prompt.safetensors", "backbone/unet/config.json"):
        flip(copy(f"bitflip:{rel}"), rel, at=-3 if rel.endswith(".safetensors") else len((src / rel).read_bytes()) // 2)
    for rel in ("fidelity.safetensors", "realism.safetensors", "config.json", MANIFEST,
                "backbone/unet/diffusion_pytorch_model.safetensors", "backbone/vae/config.json"):
        p = copy(f"missing:{rel}")
        (p / rel).unlink()
    p = copy("truncated adapter (re-recorded)")
    (p / "fidelity.safetensors").write_bytes((src / "fidelity.safetensors").read_bytes()[:100])
    write_manifest(p)
    p = copy("random-bytes adapter (re-recorded)")
    (p / "realism.safetensors").write_bytes(np.random.default_rng(1).integers(0, 256, 4000, np.uint8).tobytes())
    write_manifest(p)
    p = copy("empty adapter file (re-recorded)")
    (p / "realism.safetensors").write_bytes(b"")
    write_manifest(p)
    st = load_file(src / "fidelity.safetensors")
    p = copy("half the adapter keys (re-recorded)")
    save_file(dict(sorted(st.items())[: len(st) // 2]), p / "fidelity.safetensors")
    write_manifest(p)
    p = copy("no adapter keys (re-recorded)")
    save_file({}, p / "fidelity.safetensors")
    write_manifest(p)
    p = copy("adapter of rank 8 (re-recorded)")
    save_file({k: torch.zeros(*(8 if s == 4 else s for s in v.shape)) for k, v in st.items()}, p / "fidelity.safetensors")
    write_manifest(p)
    p = copy("NaN in adapter (re-recorded)")
    save_file({k: torch.full_like(v, float("nan")) for k, v in st.items()}, p / "fidelity.safetensors")
    write_manifest(p)
    p = copy("inf in adapter (re-recorded)")
    save_file({k: v + float("inf") if i == 0 else v for i, (k, v) in enumerate(sorted(st.items()))},
              p / "realism.safetensors")
    write_manifest(p)
    p = copy("huge adapter values (re-recorded)")
    save_file({k: v * 1e30 if "lora_B" in k else v for k, v in st.items()}, p / "fidelity.safetensors")
    write_manifest(p)
    cfg = json.loads((src / "config.json").read_text())
    for what, edit in [("config without model section", lambda c: c.pop("model")),
                       ("config without color_fix", lambda c: c["model"].pop("color_fix")),
                       ("config with unknown key", lambda c: c["model"].update(colour_fix="wavelet")),
                       ("config with k as string", lambda c: c["loss"].update(k="seven")),
                       ("config with lora_rank 8", lambda c: c["model"].update(lora_rank=8))]:
        c = json.loads(json.dumps(cfg))
        edit(c)
        p = copy(what + " (re-recorded)")
        (p / "config.json").write_text(json.dumps(c))
        write_manifest(p)
    p = copy("invalid JSON config (re-recorded)")
    (p / "config.json").write_text("{ not json")
    write_manifest(p)
    p = copy("invalid JSON manifest")
    (p / MANIFEST).write_text("[")
    p = copy("manifest with no files")
    (p / MANIFEST).write_text(json.dumps({"format": 1, "files": {}}))
    p = copy("manifest listing a missing file")
    doc = json.loads((p / MANIFEST).read_text())
    doc["files"]["extra.safetensors"] = "0" * 64
    (p / MANIFEST).write_text(json.dumps(doc))
    (d / "empty_folder").mkdir()
    out["empty folder"] = d / "empty_folder"
    out["nonexistent folder"] = d / "nope"
    out["a file, not a folder"] = src / "config.json"
    return out


# --------------------------------------------------------------------------- the cases


def build_cases(tmp: Path) -> list[Case]:
    from PIL import Image

    from ifcsr.blend import blend
    from ifcsr.checkpoint import LEGACY_STATE, load_state, save_state
    from ifcsr.config import OPTIONAL_KEYS, LossConfig, ModelConfig, StageConfig, TrainConfig
    from ifcsr.data.images import load_image
    from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR

    files = make_files(tmp / "files")
    model = IFCSR.load()
    cases: list[Case] = []
    add = cases.append

    # ---- image files, through load_image
    def rgb_of(name):
        return np.asarray(Image.open(files[name]).convert("RGB"))

    file_checks = {
        "rgb.png": lambda a: np.array_equal(a, rgb_of("rgb.png")),
        "grey.png": lambda a: np.array_equal(a[..., 0], a[..., 2]) and np.array_equal(a, rgb_of("grey.png")),
        "rgba.png": lambda a: (a[:8] == 255).all() and not (a[8:] == 255).all(),  # transparent -> white
        "la.png": lambda a: (a[:8] == 255).all(),
        "palette.png": lambda a: np.array_equal(a, rgb_of("palette.png")),
        "palette_transparent.png": lambda a: (a[0, 0] == 255).all(),
        "grey16.png": lambda a: abs(int(a[-1, -1, 0]) - round(255 * 63750 / 65535)) <= 1 and a.mean() > 50,
        "int32_in_range.tif": lambda a: abs(int(a[-1, -1, 0]) - round(255 * 63750 / 65535)) <= 1,
        "int32_out_of_range.tif": REFUSE,
        "float01.tif": lambda a: a[0, 0, 0] == 0 and a[-1, -1, 0] == 255 and 120 < a.mean() < 135,
        "float255.tif": REFUSE,
        "float_nan.tif": REFUSE,
        "bilevel.png": lambda a: set(np.unique(a)) <= {0, 255},
        "cmyk.jpg": lambda a: a.shape == (16, 16, 3) and np.abs(a.astype(int) - rgb_of("rgb.png")).mean() < 40,
        "rgb.jpg": lambda a: np.array_equal(a, rgb_of("rgb.jpg")),  # as PIL decodes it
        "rgb.bmp": lambda a: np.array_equal(a, rgb_of("rgb.png")),
        "rgb.tif": lambda a: np.array_equal(a, rgb_of("rgb.png")),
        "rgb.gif": lambda a: a.shape == (16, 16, 3),
        "rgb.webp": lambda a: np.array_equal(a, rgb_of("rgb.png")),
        "animated.gif": lambda a: a.shape == (16, 16, 3),  # the first frame
        **{f"exif{o}.png": (lambda a: np.array_equal(a, files["_shown"])) for o in range(1, 9)},
        "truncated.png": REFUSE, "empty.png": REFUSE, "random.png": REFUSE, "text.png": REFUSE,
        "folder.png": REFUSE, "missing.png": REFUSE,
    }
    for name, check in file_checks.items():
        add(Case("image file", name, (lambda n=name: load_image(files[n])), check))

    def bomb():
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = 100
        try:
            return load_image(files["huge_header.png"])
        finally:
            Image.MAX_IMAGE_PIXELS = old
    add(Case("image file", "decompression bomb (PIL limit)", bomb))

    # ---- what infer accepts
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    f01 = u8.astype(np.float32) / 255
    t = torch.from_numpy(f01).permute(2, 0, 1)[None].contiguous()
    ref = model.infer(t).fidelity

    def same_as_ref(e):
        return torch.allclose(e.fidelity, ref, atol=1e-5)

    wide = np.zeros((8, 16, 3), np.uint8)
    wide[:, ::2] = u8
    strided = wide[:, ::2]  # every other column: u8 itself, not contiguous
    infer_inputs = {
        "numpy uint8 HxWx3": (u8, same_as_ref),
        "numpy float32 [0,1]": (f01, same_as_ref),
        "numpy float64 [0,1]": (f01.astype(np.float64), same_as_ref),
        "numpy float16 [0,1]": (f01.astype(np.float16), lambda e: torch.allclose(e.fidelity, ref, atol=5e-3)),
        "numpy float [0,255]": (f01 * 255, REFUSE),
        "numpy float with NaN": (np.where(f01 > 0.5, np.nan, f01), REFUSE),
        "numpy float with inf": (np.where(f01 > 0.5, np.inf, f01), REFUSE),
        "numpy float negative": (f01 - 0.5, REFUSE),
        "numpy HxWx4": (np.dstack([u8, u8[..., :1]]), REFUSE),
        "numpy HxW": (u8[..., 0], REFUSE),
        "numpy HxWx1": (u8[..., :1], REFUSE),
        "numpy int16": (u8.astype(np.int16), REFUSE),
        "numpy int64": (u8.astype(np.int64), REFUSE),
        "numpy uint16": (u8.astype(np.uint16) * 257, REFUSE),
        "numpy bool": (u8 > 127, REFUSE),
        "numpy complex": (f01.astype(np.complex64), REFUSE),
        "numpy CHW (channels first)": (np.ascontiguousarray(u8.transpose(2, 0, 1)), REFUSE),
        "numpy non-contiguous view": (strided, same_as_ref),
        "tensor (3,H,W)": (t[0], same_as_ref),
        "tensor (B,3,H,W)": (t, same_as_ref),
        "tensor batch of 2": (torch.cat([t, t]), lambda e: e.fidelity.shape[0] == 2 and torch.allclose(e.fidelity[1:], ref, atol=1e-5)),
        "tensor float64": (t.double(), same_as_ref),
        "tensor requires_grad": (t.clone().requires_grad_(True), same_as_ref),
        "tensor channels_last": (t.contiguous(memory_format=torch.channels_last), same_as_ref),
        "tensor (B,4,H,W)": (torch.rand(1, 4, 8, 8), REFUSE),
        "tensor (B,1,H,W)": (torch.rand(1, 1, 8, 8), REFUSE),
        "tensor uint8": ((t * 255).to(torch.uint8), REFUSE),
        "tensor bool": (t > 0.5, REFUSE),
        "tensor 5-D": (t[None], REFUSE),
        "tensor empty batch": (t[:0], REFUSE),
        "tensor zero width": (t[..., :0], REFUSE),
        "tensor NaN": (torch.where(t > 0.5, torch.nan, t), REFUSE),
        "tensor in [0,255]": (t * 255, REFUSE),
        "tensor 3x3 (too small)": (t[..., :3, :3], REFUSE),
        "python list": (u8.tolist(), REFUSE),
        "None": (None, REFUSE),
        "a string (file name)": ("photo.png", REFUSE),
        "PIL RGB": (Image.fromarray(u8), same_as_ref),
        "PIL L": (Image.fromarray(u8[..., 0]), REFUSE),
        "PIL RGBA": (Image.fromarray(np.dstack([u8, u8[..., :1]]), "RGBA"), REFUSE),
    }
    for name, (x, check) in infer_inputs.items():
        add(Case("infer input", name, (lambda x=x: model.infer(x)), check))
    add(Case("infer input", "tile='yes'", lambda: model.infer(t, tile="yes")))
    add(Case("infer input", "color_fix='bogus'", lambda: model.infer(t, color_fix="bogus")))
    add(Case("infer input", "tile=True on a small image", lambda: model.infer(t, tile=True),
             lambda e: torch.allclose(e.fidelity, ref, atol=2e-2)))

    # ---- blend
    f, r = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    fn, rn = f[0].permute(1, 2, 0).numpy(), r[0].permute(1, 2, 0).numpy()

    def lerp(g):
        return lambda x: torch.allclose(x, torch.lerp(f, r, float(g)), atol=1e-6)

    nanf = f.clone()
    nanf[0, 0, 0, 0] = float("nan")
    blends = {
        "torch NaN pixel": (lambda: blend(nanf, r, 0.5), REFUSE),
        "torch endpoint in [0,3]": (lambda: blend(f * 3, r, 0.5), REFUSE),
        "torch endpoint negative": (lambda: blend(f - 1, r, 0.5), REFUSE),
        "torch inf pixel": (lambda: blend(f.masked_fill(f > 0.9, float("inf")), r, 0.5), REFUSE),
        "torch int endpoints": (lambda: blend((f * 255).long(), (r * 255).long(), 0.5), REFUSE),
        "torch shape mismatch": (lambda: blend(f, r[..., :4], 0.5), REFUSE),
        "torch 2-channel": (lambda: blend(f[:, :2], r[:, :2], 0.5), REFUSE),
        "numpy float [0,255]": (lambda: blend(fn * 255, rn * 255, 0.5), REFUSE),
        "numpy float NaN": (lambda: blend(np.where(fn > 0.5, np.nan, fn), rn, 0.5), REFUSE),
        "numpy uint8": (lambda: blend((fn * 255).astype(np.uint8), (rn * 255).astype(np.uint8), 0.5),
                        lambda x: x.dtype == np.uint8 and np.abs(x.astype(float) - (fn + rn) * 127.5).max() <= 1.5),
        "numpy int32": (lambda: blend((fn * 255).astype(np.int32), (rn * 255).astype(np.int32), 0.5), REFUSE),
        "numpy and torch mixed": (lambda: blend(f, rn, 0.5), REFUSE),
        "lists": (lambda: blend(fn.tolist(), rn.tolist(), 0.5), REFUSE),
        "gamma string": (lambda: blend(f, r, "0.5"), REFUSE),
        "gamma None": (lambda: blend(f, r, None), REFUSE),
        "gamma complex": (lambda: blend(f, r, 0.5 + 1j), REFUSE),
        "gamma bool": (lambda: blend(f, r, True), REFUSE),
        "gamma NaN": (lambda: blend(f, r, float("nan")), REFUSE),
        "gamma inf": (lambda: blend(f, r, float("inf")), REFUSE),
        "gamma -0.1": (lambda: blend(f, r, -0.1), REFUSE),
        "gamma 1.1": (lambda: blend(f, r, 1.1), REFUSE),
        "gamma 1.5 with extrapolate": (lambda: blend(f, r, 1.5, extrapolate=True),
                                       lambda x: torch.allclose(x, torch.lerp(f, r, 1.5).clamp(0, 1))),
        "gamma numpy float32": (lambda: blend(f, r, np.float32(0.25)), lerp(0.25)),
        "gamma 0-d tensor": (lambda: blend(f, r, torch.tensor(0.75)), lerp(0.75)),
        "gamma Fraction": (lambda: blend(f, r, Fraction(1, 4)), lerp(0.25)),
        "gamma int 1": (lambda: blend(f, r, 1), lerp(1.0)),
        "gamma per-sample, wrong length": (lambda: blend(f, r, [0.1, 0.2]), REFUSE),
        "gamma map wrong shape": (lambda: blend(f, r, torch.zeros(5, 5)), REFUSE),
        "gamma map with NaN": (lambda: blend(f, r, torch.full((8, 8), float("nan"))), REFUSE),
        "gamma map out of range": (lambda: blend(f, r, torch.full((8, 8), 2.0)), REFUSE),
        "gamma map (H,W) torch": (lambda: blend(f, r, torch.full((8, 8), 0.5)), lerp(0.5)),
        "gamma map (H,W) numpy": (lambda: blend(fn, rn, np.full((8, 8), 0.5)),
                                  lambda x: np.allclose(x, (fn + rn) / 2, atol=1e-6)),
        "gamma list of strings": (lambda: blend(f, r, ["a"]), REFUSE),
        "gamma complex tensor": (lambda: blend(f, r, torch.tensor(0.5 + 0j)), REFUSE),
        "out= of the wrong shape": (lambda: blend(f, r, 0.5, out=torch.empty(1, 3, 4, 4)), REFUSE),
    }
    for name, (fn_, check) in blends.items():
        add(Case("blend", name, fn_, check))

    # ---- config dicts and files
    good = json.loads((BUNDLED_CHECKPOINT / "config.json").read_text())
    from dataclasses import fields

    for section in ("model", "loss", "stage1", "stage2"):
        c = json.loads(json.dumps(good))
        c.pop(section)
        add(Case("config", f"missing section {section}", lambda c=c: TrainConfig.from_dict(c)))
    for section, cls in (("model", ModelConfig), ("loss", LossConfig), ("stage1", StageConfig)):
        for fld in fields(cls):
            if fld.name in OPTIONAL_KEYS[cls.__name__]:
                continue
            c = json.loads(json.dumps(good))
            c[section].pop(fld.name)
            add(Case("config", f"missing {section}.{fld.name}", lambda c=c: TrainConfig.from_dict(c)))
    c = json.loads(json.dumps(good))
    for section, cls in (("model", "ModelConfig"), ("loss", "LossConfig"), ("stage1", "StageConfig")):
        for k in OPTIONAL_KEYS[cls]:
            c[section].pop(k, None)
    add(Case("config", "documented optional keys omitted", lambda c=c: TrainConfig.from_dict(c),
             lambda cfg: cfg.model.color_fix == "wavelet" and cfg.model.color_fix_levels == 5))
    for what, edit in [("k as string", ("loss", "k", "seven")), ("k = inf", ("loss", "k", float("inf"))),
                       ("k = 0", ("loss", "k", 0)), ("steps as float", ("stage1", "steps", 2.5)),
                       ("steps null", ("stage1", "steps", None)), ("lora_rank as string", ("model", "lora_rank", "4")),
                       ("color_fix bogus", ("model", "color_fix", "sepia")), ("scale 0", ("model", "scale", 0)),
                       ("betas as number", ("stage1", "betas", 0.9)), ("lr negative", ("stage1", "lr", -1.0)),
                       ("lr NaN", ("stage1", "lr", float("nan"))), ("unknown key", ("model", "colour_fix", "x")),
                       ("grad_clip as string", ("stage1", "grad_clip", "1")), ("feature_net bogus", ("loss", "feature_net", "alex"))]:
        c = json.loads(json.dumps(good))
        c[edit[0]][edit[1]] = edit[2]
        add(Case("config", what, lambda c=c: TrainConfig.from_dict(c)))
    add(Case("config", "unknown section", lambda: TrainConfig.from_dict({**good, "extra": {}})))
    add(Case("config", "not a dict", lambda: TrainConfig.from_dict(["model"])))
    for what, text in [("invalid JSON file", "{ not json"), ("empty file", ""), ("JSON null", "null"),
                       ("JSON list", "[1, 2]"), ("binary garbage", "\x00\xff")]:
        p = tmp / f"cfg_{len(cases)}.json"
        p.write_text(text, errors="surrogateescape") if "\xff" not in text else p.write_bytes(b"\x00\xff\xfe")
        add(Case("config", what, lambda p=p: TrainConfig.load(p)))

    # ---- checkpoints
    for name, path in corrupt_copies(BUNDLED_CHECKPOINT, tmp / "ck").items():
        add(Case("checkpoint", name, lambda p=path: IFCSR.load(p)))
    nan_ck = tmp / "ck" / "NaN in adapter (re-recorded)"
    add(Case("checkpoint", "NaN adapter loaded with verify=False", lambda: IFCSR.load(nan_ck, verify=False)))

    def huge_infer():
        return IFCSR.load(tmp / "ck" / "huge adapter values (re-recorded)").infer(t)
    add(Case("checkpoint", "huge adapter values: infer", huge_infer,
             lambda e: bool(torch.isfinite(e.fidelity).all())))  # finite and clamped: a valid (ugly) image
    add(Case("checkpoint", "bundled checkpoint", lambda: IFCSR.load(), lambda m: m.backbone.is_tiny))

    # ---- trainer states
    st_dir = tmp / "states"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(tmp / 'PWNED')!r}, 'w').write('x')",))

    def state_case(name, make, check=REFUSE):
        d = st_dir / name.replace(" ", "_")
        d.mkdir(parents=True)
        make(d)
        add(Case("trainer state", name, lambda d=d: load_state(d), check))

    state_case("pickled code payload (.pt)", lambda d: torch.save({"stage": 1, "step": 1, "optimizer": Payload()},
                                                                    d / LEGACY_STATE))
    state_case("garbage .pt", lambda d: (d / LEGACY_STATE).write_bytes(b"garbage" * 10))
    state_case("empty .pt", lambda d: (d / LEGACY_STATE).write_bytes(b""))
    state_case("legacy .pt of plain tensors", lambda d: torch.save(
        {"stage": 1, "step": 3, "optimizer": {"state": {}, "param_groups": []}, "torch_rng": torch.get_rng_state()},
        d / LEGACY_STATE), lambda s: s["step"] == 3)
    state_case("legacy .pt without step", lambda d: torch.save({"stage": 1}, d / LEGACY_STATE))

    def tamper(d):
        save_state(d, {"stage": 1, "step": 2, "objects": {"w": torch.ones(3)}})
        b = bytearray((d / "trainer_state.safetensors").read_bytes())
        b[-1] ^= 1
        (d / "trainer_state.safetensors").write_bytes(bytes(b))
    state_case("tampered tensors", tamper)
    state_case("missing tensor file", lambda d: (save_state(d, {"stage": 1, "step": 2}),
                                                 (d / "trainer_state.safetensors").unlink()))
    state_case("invalid index JSON", lambda d: (save_state(d, {"stage": 1, "step": 2}),
                                                (d / "trainer_state.json").write_text("{")))

    def fmt99(d):
        save_state(d, {"stage": 1, "step": 2})
        doc = json.loads((d / "trainer_state.json").read_text())
        doc["format"] = 99
        (d / "trainer_state.json").write_text(json.dumps(doc))
    state_case("unknown format number", fmt99)
    state_case("valid state", lambda d: save_state(d, {"stage": 2, "step": 5, "x": (1, 2.5, None)}),
               lambda s: s["step"] == 5 and s["x"] == (1, 2.5, None))

    # ---- `ifcsr train`: refused before any training
    out = tmp / "train"
    for name, argv in [
        ("--stages 3", ["--stages", "3"]), ("--stages 0,3", ["--stages", "0,3"]), ("--stages ''", ["--stages", ""]),
        ("--stages x", ["--stages", "x"]), ("--steps 0", ["--steps", "0"]), ("--steps -1", ["--steps", "-1"]),
        ("--k inf", ["--k", "inf"]), ("--k nan", ["--k", "nan"]), ("--k 0", ["--k", "0"]), ("--k -2", ["--k", "-2"]),
        ("--k seven (argparse)", ["--k", "seven"]), ("--degradation bogus", ["--degradation", "bogus"]),
        ("--degradation mixed:2", ["--degradation", "mixed:2"]), ("--degradation mixed:x", ["--degradation", "mixed:x"]),
        ("--data missing folder", ["--data", str(tmp / "nodata")]),
        ("--data a file", ["--data", str(files["rgb.png"])]),
        ("--feature-net bogus (argparse)", ["--feature-net", "alex"]), ("--preset bogus (argparse)", ["--preset", "x"]),
        ("--device tpu", ["--device", "tpu"]), ("--device cuda:7", ["--device", "cuda:7"]),
        ("--out /dev/null/x", ["--out", "/dev/null/x"]),
        ("--out name too long", ["--out", str(tmp / ("x" * 300))]),
        ("--backbone missing folder", ["--backbone", str(tmp / "nobackbone"), "--stages", "1"]),
    ]:
        argv = ["train", "--preset", "smoke", *(["--out", str(out / name.replace(" ", "_").replace("/", "_"))]
                                                 if "--out" not in argv else []), *argv]
        add(Case("cli train", name, lambda a=argv: cli(*a)))
    (tmp / "emptydata").mkdir()
    add(Case("cli train", "--data empty folder", lambda: cli("train", "--preset", "smoke", "--out", out / "e",
                                                             "--data", tmp / "emptydata")))
    locked = tmp / "locked"
    locked.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (locked / ".ifcsr.lock").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
    add(Case("cli train", "OUT locked by a live run", lambda: cli("train", "--preset", "smoke", "--out", locked)))
    changed = tmp / "changed"
    changed.mkdir()
    (changed / "run_config.json").write_text(json.dumps(TrainConfig().to_dict()))
    add(Case("cli train", "rerun with another config", lambda: cli("train", "--preset", "smoke", "--out", changed)))
    payload_out = tmp / "payload"
    shutil.copytree(BUNDLED_CHECKPOINT / "backbone", payload_out / "backbone")
    (payload_out / "checkpoint").mkdir()
    torch.save({"stage": 1, "step": 1, "optimizer": Payload()}, payload_out / "checkpoint" / LEGACY_STATE)
    add(Case("cli train", "pickled payload in OUT/checkpoint",
             lambda: cli("train", "--preset", "smoke", "--out", payload_out, "--device", "cpu")))

    # ---- `ifcsr infer`
    io_ = tmp / "infer"

    def outputs(d):
        return lambda res: res.code == 0 and len(list(Path(d).glob("*.png"))) > 0

    for name in ("missing.png", "folder.png", "text.png", "truncated.png", "tiny2x2.png", "float255.tif"):
        add(Case("cli infer", f"image {name}", lambda n=name: cli("infer", files[n], "--out", io_ / "x")))
    for g in ("1.5", "nan", "inf", "-0.1"):
        add(Case("cli infer", f"--gamma {g}", lambda g=g: cli("infer", files["rgb.png"], "--gamma", g, "--out", io_ / "g")))
    add(Case("cli infer", "--gamma abc (argparse)", lambda: cli("infer", files["rgb.png"], "--gamma", "abc")))
    d1 = io_ / "dup"
    add(Case("cli infer", "--gamma 0.5 0.5 (duplicate)", lambda: cli("infer", files["rgb.png"], "--gamma", "0.5", "0.5",
                                                                     "--out", d1),
             lambda res: res.code == 0 and len(list(d1.glob("*gamma*"))) == 1))
    d2 = io_ / "close"
    add(Case("cli infer", "--gamma 0.121 0.124", lambda: cli("infer", files["rgb.png"], "--gamma", "0.121", "0.124",
                                                             "--out", d2),
             lambda res: res.code == 0 and len(list(d2.glob("*gamma*"))) == 2))
    d3 = io_ / "stems"
    add(Case("cli infer", "two inputs with one stem", lambda: cli("infer", files["a/x.png"], files["b/x.png"],
                                                                  "--out", d3),
             lambda res: res.code == 0 and len(list(d3.glob("*_fidelity.png"))) == 2))
    d4 = io_ / "grey16"
    add(Case("cli infer", "16-bit grey PNG", lambda: cli("infer", files["grey16.png"], "--gamma", "0", "--out", d4),
             lambda res: res.code == 0 and 60 < np.asarray(Image.open(d4 / "grey16_fidelity.png")).mean() < 200))
    add(Case("cli infer", "--checkpoint missing", lambda: cli("infer", files["rgb.png"], "--checkpoint", tmp / "nock")))
    add(Case("cli infer", "--checkpoint corrupt", lambda: cli("infer", files["rgb.png"], "--checkpoint",
                                                              tmp / "ck" / "bitflip:fidelity.safetensors")))
    add(Case("cli infer", "--checkpoint a file", lambda: cli("infer", files["rgb.png"], "--checkpoint", files["rgb.png"])))
    add(Case("cli infer", "--out /dev/null/x", lambda: cli("infer", files["rgb.png"], "--out", "/dev/null/x")))
    add(Case("cli infer", "--out an existing file", lambda: cli("infer", files["rgb.png"], "--out", files["rgb.png"])))
    add(Case("cli infer", "--tile bogus (argparse)", lambda: cli("infer", files["rgb.png"], "--tile", "maybe")))
    add(Case("cli infer", "--device tpu", lambda: cli("infer", files["rgb.png"], "--device", "tpu")))
    add(Case("cli infer", "--device cuda:7", lambda: cli("infer", files["rgb.png"], "--device", "cuda:7")))
    add(Case("cli infer", "4400x4400 output without --force-large", lambda: cli("infer", files["big1100.png"],
                                                                               "--out", io_ / "big")))
    add(Case("cli infer", "no images (argparse)", lambda: cli("infer")))
    d5 = io_ / "ok"
    add(Case("cli infer", "plain RGB PNG", lambda: cli("infer", files["rgb.png"], "--out", d5), outputs(d5)))

    # ---- `ifcsr demo` and the rest of the CLI
    for name, argv in [("--photo nonsense", ["--photo", "nonsense"]), ("--step 0", ["--step", "0"]),
                       ("--step 2", ["--step", "2"]), ("--step nan", ["--step", "nan"]),
                       ("--image missing", ["--image", files["missing.png"]]),
                       ("--image text file", ["--image", files["text.png"]]),
                       ("--checkpoint missing", ["--checkpoint", tmp / "nock"]),
                       ("--degradation bogus (argparse)", ["--degradation", "jpeg"]),
                       ("--device tpu", ["--device", "tpu"]), ("--out /dev/null/x", ["--out", "/dev/null/x"])]:
        add(Case("cli demo", name, lambda a=argv: cli("demo", "--out", tmp / "demo", *a) if "--out" not in a
                 else cli("demo", *a)))
    add(Case("cli", "unknown command (argparse)", lambda: cli("frobnicate")))
    add(Case("cli", "no command: help", lambda: cli(), lambda res: res.code == 0 and "usage" in res.out))
    add(Case("cli", "evaluate --gammas abc (argparse)", lambda: cli("evaluate", "--gammas", "abc")))
    add(Case("cli", "sweep --pairs missing", lambda: cli("sweep", "--pairs", tmp / "nopairs", "--out", tmp / "sw")))
    add(Case("cli", "fetch-weights bogus name", lambda: cli("fetch-weights", "no-such-weights")))
    add(Case("cli", "bench --bogus (argparse)", lambda: cli("bench", "--bogus")))

    # ---- data and training API
    from ifcsr.data import ImageFolder, SampleDataset, load_sample, pairs_from_samples
    from ifcsr.train import Trainer

    (tmp / "notimages").mkdir()
    (tmp / "notimages" / "a.txt").write_text("x")
    for name, fn_ in [
        ("ImageFolder missing", lambda: ImageFolder(tmp / "nodata", crop_size=32)),
        ("ImageFolder empty", lambda: ImageFolder(tmp / "emptydata", crop_size=32)),
        ("ImageFolder of text files", lambda: ImageFolder(tmp / "notimages", crop_size=32)),
        ("ImageFolder crop larger than its images", lambda: ImageFolder(tmp / "files" / "a", crop_size=64)[0]),
        ("SampleDataset names as a string", lambda: SampleDataset("chelsea")),
        ("SampleDataset unknown name", lambda: SampleDataset(["nonsense"])),
        ("load_sample nonsense", lambda: load_sample("nonsense")),
        ("pairs_from_samples nonsense", lambda: pairs_from_samples(["nonsense"])),
        ("StageConfig steps -1", lambda: StageConfig(steps=-1)),
        ("StageConfig batch 0", lambda: StageConfig(batch_size=0)),
        ("StageConfig lr 0", lambda: StageConfig(lr=0)),
        ("StageConfig lr NaN", lambda: StageConfig(lr=float("nan"))),
        ("StageConfig lr_schedule bogus", lambda: StageConfig(lr_schedule="linear")),
        ("StageConfig init_from bogus", lambda: StageConfig(init_from="bicubic")),
        ("ModelConfig scale 0", lambda: ModelConfig(scale=0)),
        ("ModelConfig formulation bogus", lambda: ModelConfig(formulation="eps")),
        ("LossConfig layers out of range", lambda: LossConfig(layers=(9,))),
        ("LossConfig k string", lambda: LossConfig(k="7")),
        ("train_stage(3)", lambda: Trainer(model, None, config=model.config, progress=False).train_stage(3)),
        ("train_stage without a model", lambda: Trainer(None, None, progress=False).train_stage(1)),
        ("Trainer device bogus", lambda: Trainer(model, None, config=model.config, progress=False, device="tpu")),
    ]:
        add(Case("api", name, fn_))
    cases += build_recount_cases(tmp / "recount", files)
    cases.append(Case("cleanup", "stop the lock holder", lambda: (sleeper.kill(), sleeper.wait())[1] is not None,
                      lambda ok: ok))
    return cases


class Wrote:
    """A refusal that came too late: the CLI's named error, but outputs were already written."""

    def __init__(self, res: CliResult, files: list[str]):
        self.res, self.files = res, files

    def __repr__(self):
        return f"exit {self.res.code} after writing {self.files[:3]}"


def _nested(depth: int, leaf="to_q"):
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def build_recount_cases(tmp: Path, files: dict) -> list[Case]:
    """Issue 28, part 6: the classes the re-count found (config values out of any range, empty and
    unwritable files, lying trainer states, late input checks, adapters tied to another scale or
    role, checksum lists that omit a file or point outside their folder)."""
    import dataclasses
    from dataclasses import replace

    from PIL import Image
    from safetensors.torch import load_file, save_file

    import ifcsr.checkpoint as ckmod
    from ifcsr.checkpoint import LEGACY_STATE, MANIFEST, load_state, save_state, write_manifest
    from ifcsr.config import SECTIONS, TrainConfig
    from ifcsr.models import BUNDLED_CHECKPOINT, IFCSR, load_backbone
    from ifcsr.train import Trainer

    tmp.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    add = cases.append
    good = json.loads((BUNDLED_CHECKPOINT / "config.json").read_text())

    # ---- every config field, one value far outside any sane range, through from_dict (what a load reads)
    def hostile_for(annotation: str):
        if str(annotation).startswith("tuple"):
            return [_nested(100)], "a list nested 100 deep"
        if str(annotation).startswith("str"):
            return "x" * 5000, "5000 characters"
        return 10**30, "10^30"  # int, float and bool fields

    for section, klass in SECTIONS.items():
        for f in dataclasses.fields(klass):
            value, label = hostile_for(f.type)
            c = json.loads(json.dumps(good))
            c.setdefault(section, {})[f.name] = value
            add(Case("config range", f"{section}.{f.name} = {label}", lambda c=c: TrainConfig.from_dict(c)))
    for name, value in (("data", [_nested(100)]), ("data_ratio", [1e300]), ("data_limit", [10**30]),
                        ("num_workers", 10**6), ("degradation", "x" * 5000)):
        c = json.loads(json.dumps(good))
        c[name] = value
        add(Case("config range", f"{name} = {str(value)[:20]}", lambda c=c: TrainConfig.from_dict(c)))

    # ---- checkpoints whose config.json (checksums re-recorded) asks for the impossible
    base = tmp / "ck"

    def copy(name: str, src: Path = BUNDLED_CHECKPOINT) -> Path:
        p = base / name.replace("/", "_").replace(" ", "_")
        shutil.copytree(src, p)
        return p

    def edited(name, section, key, value, src=BUNDLED_CHECKPOINT):
        p = copy(name, src)
        c = json.loads((p / "config.json").read_text())
        c[section][key] = value
        (p / "config.json").write_text(json.dumps(c))
        write_manifest(p)
        return p

    for key, value in (("lora_rank", 10**30), ("scale", 10**6), ("antiring", 1_000_000_001), ("lora_alpha", 1e300),
                       ("timestep", 10**9), ("target_modules", [_nested(500)])):
        p = edited(f"{key} huge", "model", key, value)
        add(Case("checkpoint range", f"model.{key} = {str(value)[:16]} (re-recorded)", lambda p=p: IFCSR.load(p),
                 isolate=True))
    p = edited("lora_alpha NaN", "model", "lora_alpha", float("nan"))  # json writes the NaN token
    add(Case("checkpoint range", "model.lora_alpha = NaN (re-recorded)", lambda p=p: IFCSR.load(p), isolate=True))
    p = edited("antiring huge infer", "model", "antiring", 1_000_000_001)
    add(Case("checkpoint range", "antiring 1000000001 then infer (the hang)",
             lambda p=p: IFCSR.load(p).infer(torch.rand(1, 3, 16, 16)), isolate=True))
    for key, value in (("crop_size", 10**6), ("batch_size", 10**6), ("steps", 10**12)):
        p = edited(f"stage1 {key}", "stage1", key, value)
        add(Case("checkpoint range", f"stage1.{key} = {value} (re-recorded)", lambda p=p: IFCSR.load(p),
                 isolate=True))
    deep = "[" * 100_000 + "]" * 100_000
    for rel in ("config.json", "ifcsr.json", "history.json", MANIFEST):
        p = copy(f"deep {rel}")
        (p / rel).write_text(deep if rel != "config.json" else '{"model": ' + deep + "}")
        if rel != MANIFEST:
            write_manifest(p)
        add(Case("checkpoint range", f"100,000 nested lists in {rel}", lambda p=p: IFCSR.load(p)))
    p = copy("huge config")
    (p / "config.json").write_text(json.dumps({**good, "pad": "x" * (4 << 20)}))
    write_manifest(p)
    add(Case("checkpoint range", "a 4 MB config.json", lambda p=p: IFCSR.load(p)))
    for what, text in (("ifcsr.json a list", "[1]"), ("history.json a number", "7")):
        p = copy(what)
        (p / what.split()[0]).write_text(text)
        write_manifest(p)
        add(Case("checkpoint range", f"{what} (re-recorded)", lambda p=p: IFCSR.load(p)))

    # ---- files: empty or foreign prompt embedding, a disk that fills up mid-save
    p = copy("empty prompt")
    (p / "backbone" / "empty_prompt.safetensors").write_bytes(b"")
    write_manifest(p)
    add(Case("files", "0-byte backbone/empty_prompt.safetensors (re-recorded)", lambda p=p: IFCSR.load(p)))
    p = copy("wide prompt")
    save_file({"prompt_embeds": torch.zeros(1, 4, 7)}, p / "backbone" / "empty_prompt.safetensors")
    write_manifest(p)
    add(Case("files", "prompt embedding of the wrong width (re-recorded)", lambda p=p: IFCSR.load(p)))
    p = copy("nan prompt")
    save_file({"prompt_embeds": torch.full((1, 4, 32), float("nan"))}, p / "backbone" / "empty_prompt.safetensors")
    write_manifest(p)
    add(Case("files", "NaN prompt embedding (re-recorded)", lambda p=p: IFCSR.load(p)))

    resaved = IFCSR.load().save(base / "resaved")  # the bundle saved by this ifcsr: adapters carry their metadata

    def full_disk(at: int):
        import safetensors.torch
        from safetensors import SafetensorError

        target = copy(f"full disk {at}", resaved)
        before = {q.relative_to(target): q.read_bytes() for q in target.rglob("*") if q.is_file()}
        real, calls = safetensors.torch.save_file, []

        def fake(*args, **kwargs):
            calls.append(1)
            if len(calls) == at:
                raise SafetensorError(f'Error while serializing: I/O error: No space left on device (os error 28) '
                                      f'at path "{args[1]}"')
            return real(*args, **kwargs)

        safetensors.torch.save_file = fake
        try:
            IFCSR.load(resaved).save(target)
        except Exception:
            after = {q.relative_to(target): q.read_bytes() for q in target.rglob("*") if q.is_file()}
            leftovers = [q.name for q in target.parent.iterdir() if q.name.startswith(f".{target.name}.")]
            if after != before or leftovers:
                return f"previous checkpoint changed or temporary folders left: {leftovers}"  # silent
            raise
        finally:
            safetensors.torch.save_file = real
        return "saved on a full disk?"

    for at, where in ((1, "first adapter"), (2, "second adapter"), (3, "trainer checkpoint, third file")):
        if at == 3:
            def run(at=at):
                # a trainer checkpoint: the adapters, then the embedded backbone and the trainer state
                import safetensors.torch
                from safetensors import SafetensorError

                model = IFCSR.load(resaved)
                out = base / "full disk trainer"
                tr = Trainer(model, None, config=model.config, out_dir=out, progress=False)
                tr.save_checkpoint(1, 1)
                before = {q.relative_to(out): q.read_bytes() for q in out.rglob("*") if q.is_file()}
                real, calls = safetensors.torch.save_file, []

                def fake(*args, **kwargs):
                    calls.append(1)
                    if len(calls) == at:
                        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                                              "(os error 28)")
                    return real(*args, **kwargs)

                safetensors.torch.save_file = fake
                try:
                    tr.save_checkpoint(1, 2)
                except Exception:
                    after = {q.relative_to(out): q.read_bytes() for q in out.rglob("*") if q.is_file()}
                    if after != before or load_state(out / "checkpoint")["step"] != 1:
                        return "previous trainer checkpoint changed"
                    raise
                finally:
                    safetensors.torch.save_file = real
                return "saved on a full disk?"
        else:
            def run(at=at):
                return full_disk(at)
        add(Case("files", f"disk full while writing the {where}", run))

    # ---- trainer states that lie about their stage or step
    st_dir = tmp / "states"

    def state_case(name, make):
        d = st_dir / name.replace(" ", "_").replace("/", "_")
        d.mkdir(parents=True)
        make(d)
        add(Case("trainer state 2", name, lambda d=d: load_state(d)))

    state_case("legacy .pt: stage 7, step -3", lambda d: torch.save({"stage": 7, "step": -3}, d / LEGACY_STATE))
    state_case("legacy .pt: stage '1'", lambda d: torch.save({"stage": "1", "step": 1}, d / LEGACY_STATE))
    state_case("legacy .pt: step 2**70", lambda d: torch.save({"stage": 1, "step": 2**70}, d / LEGACY_STATE))
    state_case("json: step 'abc'", lambda d: save_state(d, {"stage": 1, "step": "abc"}))
    state_case("json: step -5", lambda d: save_state(d, {"stage": 1, "step": -5}))
    state_case("json: stage 0", lambda d: save_state(d, {"stage": 0, "step": 1}))
    state_case("json: stage 2.0", lambda d: save_state(d, {"stage": 2.0, "step": 1}))

    def deep_index(d):
        save_state(d, {"stage": 1, "step": 1})
        doc = json.loads((d / "trainer_state.json").read_text())
        (d / "trainer_state.json").write_text(json.dumps({**doc, "tree": "@"}).replace('"@"', deep))
    state_case("json: 100,000 nested lists", deep_index)

    def bad_items(d):
        save_state(d, {"stage": 1, "step": 1})
        doc = json.loads((d / "trainer_state.json").read_text())
        doc["tree"]["x"] = {"__items__": 3}
        (d / "trainer_state.json").write_text(json.dumps(doc))
    state_case("json: malformed __items__", bad_items)

    def resume_case(name, state):
        out = tmp / "resume" / name.replace(" ", "_")
        (out / "checkpoint").mkdir(parents=True)
        torch.save(state, out / "checkpoint" / LEGACY_STATE)

        def run():
            model = IFCSR.load()
            return Trainer(model, None, config=model.config, out_dir=out, progress=False).train(resume=True)
        add(Case("trainer state 2", name, run))

    resume_case("Trainer.train(resume=True) on stage 7", {"stage": 7, "step": -3})
    resume_case("Trainer.train(resume=True) on step -5", {"stage": 1, "step": -5})
    out = tmp / "cli_state"
    shutil.copytree(BUNDLED_CHECKPOINT / "backbone", out / "backbone")
    (out / "checkpoint").mkdir()
    torch.save({"stage": 7, "step": -3}, out / "checkpoint" / LEGACY_STATE)
    add(Case("trainer state 2", "`ifcsr train` resuming a stage-7 state",
             lambda: cli("train", "--preset", "smoke", "--out", out, "--device", "cpu")))

    # ---- the CLI: inputs checked before anything is written
    lr8 = tmp / "lr8.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(lr8)
    small_hr = tmp / "hr16.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(small_hr)
    right_hr = tmp / "hr32.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(right_hr)

    def infer_refused_before_writing(name, *argv):
        d = tmp / "infer" / name.replace(" ", "_")

        def run():
            res = cli("infer", *argv, "--out", d, "--quiet")
            written = sorted(q.name for q in d.rglob("*") if q.is_file()) if d.exists() else []
            return Wrote(res, written) if written else res
        add(Case("cli recount", name, run))

    infer_refused_before_writing("--gamma auto:psnr --hr SMALL.png", lr8, "--gamma", "auto:psnr", "--hr", small_hr)
    infer_refused_before_writing("auto:psnr, second HR of the wrong size", lr8, lr8, "--gamma", "auto:psnr", "--hr",
                                 right_hr, small_hr)
    infer_refused_before_writing("auto:psnr, HR not an image", lr8, "--gamma", "auto:psnr", "--hr", files["text.png"])
    d_ok = tmp / "infer" / "psnr_ok"
    add(Case("cli recount", "auto:psnr with the right HR size",
             lambda: cli("infer", lr8, "--gamma", "auto:psnr", "--hr", right_hr, "--out", d_ok, "--quiet"),
             lambda res: res.code == 0 and len(list(d_ok.glob("*auto-psnr*"))) == 1))
    from ifcsr.data.datasets import PIN_FILE

    for what, text in (("invalid JSON", "{ not json"), ("a JSON list", "[1, 2]"), ("not a digest", '{"a": "abc"}'),
                       ("100,000 nested lists", deep)):
        d = tmp / "pins" / what.replace(" ", "_")
        d.mkdir(parents=True)
        (d / PIN_FILE).write_text(text)
        add(Case("cli recount", f"fetch-data drealsr --verify, pin file {what}",
                 lambda d=d: cli("fetch-data", "drealsr", "--verify", "--dir", d)))

    # ---- silent-wrong: adapters tied to their role and scale, checksums that cover every file read
    p = edited("alpha 8", "model", "lora_alpha", 8.0, src=resaved)
    add(Case("silent-wrong", "lora_alpha edited 4 -> 8 (re-recorded)", lambda p=p: IFCSR.load(p)))
    p = edited("modules", "model", "target_modules", ["to_q", "to_k", "to_v"], src=resaved)
    add(Case("silent-wrong", "target_modules edited (re-recorded)", lambda p=p: IFCSR.load(p)))
    p = copy("swapped", resaved)
    (p / "fidelity.safetensors").rename(p / "x")
    (p / "realism.safetensors").rename(p / "fidelity.safetensors")
    (p / "x").rename(p / "realism.safetensors")
    write_manifest(p)
    add(Case("silent-wrong", "fidelity and realism files swapped (re-recorded)", lambda p=p: IFCSR.load(p)))
    for rel in ("config.json", "ifcsr.json", "history.json", "fidelity.safetensors", "backbone/unet/config.json",
                "backbone/empty_prompt.safetensors"):
        p = copy(f"unlisted {rel}", resaved)
        doc = json.loads((p / MANIFEST).read_text())
        del doc["files"][rel]
        (p / MANIFEST).write_text(json.dumps(doc))
        add(Case("silent-wrong", f"{rel} removed from {MANIFEST}", lambda p=p: IFCSR.load(p)))
    p = copy("extra bin", resaved)
    (p / "backbone" / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"unlisted")
    add(Case("silent-wrong", "a file added to backbone/ after saving", lambda p=p: IFCSR.load(p)))
    p = copy("old adapters", resaved)
    for name in ("fidelity", "realism"):
        save_file(load_file(p / f"{name}.safetensors"), p / f"{name}.safetensors")  # no metadata: an older save
    write_manifest(p)
    ref_real = IFCSR.load(resaved).infer(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))).realism
    add(Case("silent-wrong", "adapters without metadata (an older checkpoint) still load",
             lambda p=p: IFCSR.load(p).infer(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))),
             lambda e: torch.equal(e.realism, ref_real)))
    bundle_cfg = TrainConfig.load(BUNDLED_CHECKPOINT / "config.json")
    alpha8 = IFCSR(load_backbone(BUNDLED_CHECKPOINT / "backbone"),
                   replace(bundle_cfg, model=replace(bundle_cfg.model, lora_alpha=8.0))).save(base / "ck_alpha8")
    add(Case("silent-wrong", "`ifcsr train --fidelity-from CK` where CK has lora_alpha 8",
             lambda: cli("train", "--preset", "smoke", "--fidelity-from", alpha8, "--out", tmp / "fid8",
                         "--device", "cpu")))

    # ---- paths: checksum entries outside the folder are refused, and never read
    outside = base / "outside.txt"  # next to the copies: "../outside.txt" from inside one of them
    outside.write_text("not part of any checkpoint")

    def path_case(name, entry, link=False):
        p = copy(f"path {name}", resaved)
        if link:
            (p / "link.txt").symlink_to(outside)
        doc = json.loads((p / MANIFEST).read_text())
        doc["files"][entry] = ckmod.sha256_file(outside)
        (p / MANIFEST).write_text(json.dumps(doc))

        def run():
            read = []
            real = ckmod.sha256_file

            def spy(path, *a):
                if not Path(path).resolve().is_relative_to(p.resolve()):
                    read.append(str(path))
                return real(path, *a)

            ckmod.sha256_file = spy
            try:
                result = IFCSR.load(p)
            except Exception:
                if read:
                    return f"refused, but read {read[0]} first"  # silent: it read outside the folder
                raise
            finally:
                ckmod.sha256_file = real
            return result
        add(Case("paths", name, run))

    path_case("checksums entry ../outside.txt", "../outside.txt")
    path_case("checksums entry /etc/hostname", "/etc/hostname")
    path_case("checksums entry backbone/../../x", "backbone/../../outside.txt")
    path_case("checksums entry: a symlink out of the folder", "link.txt", link=True)
    p = copy("symlinked backbone file", resaved)
    (p / "backbone" / "scheduler" / "scheduler_config.json").unlink()
    (p / "backbone" / "scheduler" / "scheduler_config.json").symlink_to(
        BUNDLED_CHECKPOINT / "backbone" / "scheduler" / "scheduler_config.json")
    write_manifest(p)
    add(Case("paths", "a backbone file symlinked out of the folder (re-recorded)", lambda p=p: IFCSR.load(p)))

    # ---- --fidelity-from on a checkpoint without ifcsr.json: its own backbone, from any folder
    p = copy("no ifcsr.json")
    (p / "ifcsr.json").unlink()
    write_manifest(p)
    elsewhere = tmp / "cwd"
    elsewhere.mkdir()

    def from_elsewhere(fn):
        def run():
            here = os.getcwd()
            os.chdir(elsewhere)  # config.json's relative "ifcsr/assets/tiny/backbone" is absent here
            try:
                return fn()
            finally:
                os.chdir(here)
        return run

    add(Case("cli recount", "IFCSR.load of a checkpoint without ifcsr.json",
             from_elsewhere(lambda: IFCSR.load(p)), lambda m: Path(m.backbone.source) == p / "backbone"))
    fid_out = tmp / "fid_noifcsr"
    add(Case("cli recount", "`ifcsr train --fidelity-from CK` without CK/ifcsr.json (1 step)",
             from_elsewhere(lambda: cli("train", "--preset", "smoke", "--fidelity-from", p, "--out", fid_out,
                                        "--steps", "1", "--device", "cpu")),
             lambda res: res.code == 0 and (fid_out / "final" / MANIFEST).is_file(), timeout=300))
    return cases


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RESULTS / "hostile_inputs.csv"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import warnings

    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ifcsr-hostile-") as tmp:
        cases = build_cases(Path(tmp))
        rows = []
        for c in cases:
            outcome, detail = classify(c)
            if c.group == "cleanup":
                continue
            rows.append(dict(group=c.group, case=c.name, expected="error" if c.check is REFUSE else "accepted",
                             outcome=outcome, detail=detail))
        marker = Path(tmp) / "PWNED"
        pwned = marker.exists()
    df = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    from ifcsr.models import BUNDLED_CHECKPOINT
    from ifcsr.provenance import record

    record(args.out, inputs=[BUNDLED_CHECKPOINT])  # analysis/results/MANIFEST.json
    table = df.pivot_table(index="group", columns="outcome", values="case", aggfunc="count", fill_value=0)
    for col in ("named", "converted", "traceback", "silent", "hang"):
        if col not in table:
            table[col] = 0
    table = table[["named", "converted", "traceback", "silent", "hang"]]
    table.loc["total"] = table.sum()
    print(table.to_string())
    print(f"\n{len(df)} cases in {time.perf_counter() - t0:.0f} s; code from a checkpoint ran: {pwned}")
    for _, r in df[df.outcome.isin(["traceback", "silent", "hang"])].iterrows():
        print(f"  {r.outcome}: [{r.group}] {r.case}: {r.detail}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
