"""Reliability (issue 16, parts 2-5): nothing loads silently wrong, no raw tracebacks, no lost
progress, one run per output folder. Tiny random backbone from conftest; milliseconds each,
except the two SIGKILL runs."""

import json
import os
import stat
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ifcsr.blend import EndpointError, GammaError, blend
from ifcsr.checkpoint import (
    LOCK_FILE,
    MANIFEST,
    RunLock,
    load_state,
    recover_folder,
    write_manifest,
)
from ifcsr.config import LossConfig, ModelConfig, TrainConfig
from ifcsr.data.images import BACKGROUND, ImageError, load_image, to_tensor
from ifcsr.errors import (
    CheckpointError,
    ConfigError,
    IFCSRError,
    InputError,
    NonFiniteError,
    RunLockedError,
)
from ifcsr.models import IFCSR, load_backbone, lora_parameters

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tiny_backbone_dir):
    torch.manual_seed(0)
    m = IFCSR(load_backbone(tiny_backbone_dir), TrainConfig(model=ModelConfig(color_fix="wavelet", color_fix_levels=2)))
    g = torch.Generator().manual_seed(3)
    for n, p in lora_parameters(m.unet, "realism").items():
        if "lora_B" in n:
            p.data = torch.randn(p.shape, generator=g) * 0.05
    return m


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("ck") / "ckpt")


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- images read as a viewer shows them


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0 .. 63000 of 65535
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")  # really 16-bit on disk
    a = load_image(tmp_path / "g16.png")
    assert a.dtype == np.uint8 and a.shape == (8, 8, 3)
    np.testing.assert_array_equal(a[..., 0], np.rint(ramp / 65535 * 255).astype(np.uint8))
    assert 0 < a.mean() < 255 and len(np.unique(a)) > 30  # a ramp, not 0/255


def test_float_tiff_in_unit_range_is_read_not_black(tmp_path):
    from PIL import Image

    f = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    a = load_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(a[..., 1], np.rint(f * 255).astype(np.uint8))
    Image.fromarray(f * 300, mode="F").save(tmp_path / "big.tif")
    with pytest.raises(ImageError, match=r"expected \[0, 1\]"):
        load_image(tmp_path / "big.tif")


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    a = np.zeros((4, 8, 3), np.uint8)
    a[:, :4] = 255  # left half white
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    out = load_image(tmp_path / "rot.jpg")
    assert out.shape[:2] == (8, 4)  # portrait, as a viewer shows it
    assert out[:4].mean() > 200 and out[4:].mean() < 50  # the white half is now on top


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(tmp_path, mode):
    from PIL import Image

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 0      # top half fully transparent
    rgba[2:, :, 3] = 255    # bottom half opaque red-ish
    im = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        im = im.convert("LA")
    elif mode == "P":
        im = im.convert("P", palette=Image.ADAPTIVE, colors=4)
        im.info["transparency"] = im.getpixel((0, 0))
    im.save(tmp_path / "t.png", **({"transparency": im.info["transparency"]} if mode == "P" else {}))
    out = load_image(tmp_path / "t.png")
    assert BACKGROUND == (255, 255, 255)
    np.testing.assert_array_equal(out[:2], 255)  # transparent -> white, not black
    assert out[2:].max() < 255 or mode == "LA"


def test_decompression_bomb_is_a_named_error(tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4096 > 2 * 100: PIL's bomb error
    with pytest.raises(ImageError, match="--force-large"):
        load_image(tmp_path / "big.png")


def test_empty_batch_is_refused():
    with pytest.raises(ImageError, match="empty batch"):
        to_tensor(torch.rand(0, 3, 8, 8))


# --------------------------------------------------------------------------- corrupt and incomplete checkpoints


def test_checkpoint_records_and_verifies_sha256(saved, tmp_path):
    doc = json.loads((saved / MANIFEST).read_text())
    assert {"fidelity.safetensors", "realism.safetensors", "config.json",
            "backbone/unet/diffusion_pytorch_model.safetensors"} <= set(doc["files"])
    ck = _copy(saved, tmp_path / "ck")
    blob = bytearray((ck / "fidelity.safetensors").read_bytes())
    blob[-3] ^= 0x10  # one flipped bit in the tensor data
    (ck / "fidelity.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="fidelity.safetensors: its sha256 differs"):
        IFCSR.load(ck)


def test_bundled_checkpoint_has_its_sha256_record():
    from ifcsr.checkpoint import verify_manifest
    from ifcsr.models import BUNDLED_CHECKPOINT

    verify_manifest(BUNDLED_CHECKPOINT)  # made by IFCSR.save: retraining with --bundle regenerates it


def test_corrupt_adapter_values_are_refused_even_unverified(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    ck = _copy(saved, tmp_path / "ck")
    st = load_file(ck / "fidelity.safetensors")
    k = sorted(st)[0]
    st[k] = torch.full_like(st[k], float("nan"))
    save_file(st, ck / "fidelity.safetensors")
    with pytest.raises(CheckpointError, match="NaN"):
        IFCSR.load(ck, verify=False)
    ck = _copy(saved, tmp_path / "ck2")
    (ck / "realism.safetensors").write_bytes(b"\x00" * 7)  # truncated
    write_manifest(ck)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        IFCSR.load(ck)


def test_infer_refuses_nonfinite_endpoints_naming_the_adapter(model):
    p = next(p for n, p in lora_parameters(model.unet, "realism").items() if "lora_B" in n)
    keep = p.data.clone()
    try:
        p.data.fill_(float("nan"))
        with pytest.raises(NonFiniteError, match="the realism adapter"):
            model.infer(torch.rand(1, 3, 8, 8))
    finally:
        p.data.copy_(keep)
    model.infer(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("drop", ["model", "loss", "stage1", "model.color_fix", "loss.k", "stage2.lr"])
def test_incomplete_config_is_an_error(saved, tmp_path, drop):
    cfg = json.loads((saved / "config.json").read_text())
    section, _, key = drop.partition(".")
    if key:
        del cfg[section][key]
    else:
        del cfg[section]
    with pytest.raises(ConfigError, match=(key or section)):
        TrainConfig.from_dict(cfg)
    ck = _copy(saved, tmp_path / "ck")
    (ck / "config.json").write_text(json.dumps(cfg))
    write_manifest(ck)
    with pytest.raises(ConfigError):
        IFCSR.load(ck)


def test_documented_optional_keys_may_default(saved):
    from ifcsr.config import OPTIONAL_KEYS

    cfg = json.loads((saved / "config.json").read_text())
    for section, cls in (("model", "ModelConfig"), ("loss", "LossConfig"), ("stage1", "StageConfig")):
        for key in OPTIONAL_KEYS[cls]:
            cfg[section].pop(key, None)  # some are not even written when unset (StageConfig.degradation)
    cfg.pop("stage0")
    assert TrainConfig.from_dict(cfg).model.color_fix == "wavelet"


@pytest.mark.parametrize("bad, match", [
    ({"loss": {"k": "seven"}}, "loss.k"), ({"model": {"lora_rank": 4.5}}, "model.lora_rank"),
    ({"stage1": {"steps": None}}, "stage1.steps"), ({"model": {"colour_fix": "wavelet"}}, "unknown key"),
    ({"extra_section": {}}, "unknown key"), ({"loss": {"k": float("inf")}}, "finite"),
])
def test_wrong_config_keys_and_types_are_config_errors(saved, bad, match):
    cfg = json.loads((saved / "config.json").read_text())
    for section, values in bad.items():
        cfg.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(cfg)


def test_invalid_json_config_names_the_file(saved, tmp_path):
    ck = _copy(saved, tmp_path / "ck")
    (ck / "config.json").write_text("{ not json")
    write_manifest(ck)
    with pytest.raises(ConfigError, match=r"config.json: not valid JSON"):
        IFCSR.load(ck)


def test_partial_or_other_rank_adapter_is_an_error(saved, tmp_path, tiny_backbone_dir):
    from safetensors.torch import load_file, save_file

    ck = _copy(saved, tmp_path / "ck")
    st = load_file(ck / "fidelity.safetensors")
    save_file(dict(sorted(st.items())[: len(st) // 2]), ck / "fidelity.safetensors")
    write_manifest(ck)
    with pytest.raises(CheckpointError, match="keys missing"):
        IFCSR.load(ck)
    save_file({}, ck / "fidelity.safetensors")
    write_manifest(ck)
    with pytest.raises(CheckpointError, match=f"{len(st)} of {len(st)} keys missing"):
        IFCSR.load(ck)
    rank8 = IFCSR(load_backbone(tiny_backbone_dir), TrainConfig(model=ModelConfig(lora_rank=8))).save(tmp_path / "r8")
    ck = _copy(saved, tmp_path / "ck2")
    (ck / "fidelity.safetensors").write_bytes((rank8 / "fidelity.safetensors").read_bytes())
    write_manifest(ck)
    with pytest.raises(CheckpointError, match="LoRA rank"):
        IFCSR.load(ck)


# --------------------------------------------------------------------------- blend inputs


def test_blend_refuses_nan_and_out_of_range_endpoints():
    f, r = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    bad = f.clone()
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(EndpointError, match="fidelity.*NaN"):
        blend(bad, r, 0.5)
    with pytest.raises(EndpointError, match="realism.*\\[0, 1\\]"):
        blend(f, r * 3, 0.5)
    fn, rn = f[0].permute(1, 2, 0).numpy(), r[0].permute(1, 2, 0).numpy()
    with pytest.raises(EndpointError, match="numpy float"):
        blend(fn * 255, rn * 255, 0.5)
    u8 = (fn * 255).astype(np.uint8)
    assert blend(u8, u8, 0.3).dtype == np.uint8  # uint8 is in range by construction


def test_blend_checks_each_endpoint_once_until_it_changes(monkeypatch):
    calls = []
    real_aminmax = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda x: calls.append(1) or real_aminmax(x))
    f, r = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    for g in np.linspace(0, 1, 50):
        blend(f, r, float(g))
    assert len(calls) == 2  # a slider pays the check once per endpoint
    f[0, 0, 0, 0] = float("nan")  # in place: torch bumps the version, the check runs again
    with pytest.raises(EndpointError):
        blend(f, r, 0.5)


@pytest.mark.parametrize("gamma", ["0.5", None, 0.5 + 0.1j, b"1", [0.5, "x"], True])
def test_blend_refuses_non_numeric_gamma(gamma):
    f = torch.rand(2, 3, 4, 4)
    with pytest.raises(GammaError):
        blend(f, f, gamma)


# --------------------------------------------------------------------------- atomic checkpoints


def _trainer(tiny_backbone_dir, out, steps=6, every=2):
    from ifcsr.train import Trainer, quick_config

    torch.manual_seed(0)
    st = replace(quick_config(steps=steps, crop_size=32, batch_size=2).stage1, checkpoint_every=every)
    cfg = TrainConfig(model=ModelConfig(), stage1=st, stage2=st, loss=LossConfig(feature_net="vgg-random"))
    m = IFCSR(load_backbone(tiny_backbone_dir), cfg)
    from tests.test_core import FixedData

    return Trainer(m, FixedData(), config=cfg, out_dir=out, progress=False, device="cpu")


class _Proxy:
    """Stands in for a module inside ifcsr.checkpoint only, with some functions replaced."""

    def __init__(self, module, **override):
        self._module, self._override = module, override

    def __getattr__(self, name):
        return self._override.get(name) or getattr(self._module, name)


@pytest.mark.parametrize("window", ["between_renames", "after_swap"])
def test_interrupted_swap_is_recovered(tiny_backbone_dir, tmp_path, monkeypatch, window):
    import shutil

    import ifcsr.checkpoint as ck

    tr = _trainer(tiny_backbone_dir, tmp_path)
    tr.save_checkpoint(1, 2, None)
    calls = []

    def dying_replace(a, b):
        calls.append((a, b))
        if window == "between_renames" and len(calls) == 2:
            raise SystemExit("killed")  # the process dies: checkpoint/ is gone, .checkpoint.old and tmp remain
        return os.replace(a, b)

    def dying_rmtree(p, *a, **k):
        if window == "after_swap" and Path(p).name == ".checkpoint.old" and len(calls) == 2:
            raise SystemExit("killed")
        return shutil.rmtree(p, *a, **k)

    monkeypatch.setattr(ck, "os", _Proxy(os, replace=dying_replace))
    monkeypatch.setattr(ck, "shutil", _Proxy(shutil, rmtree=dying_rmtree))
    with pytest.raises(SystemExit):
        tr.save_checkpoint(1, 4, None)
    monkeypatch.undo()
    names = {p.name for p in tmp_path.iterdir()}
    assert ".checkpoint.old" in names
    if window == "between_renames":
        assert "checkpoint" not in names and any(n.startswith(".checkpoint.tmp-") for n in names)
    fresh = _trainer(tiny_backbone_dir, tmp_path)
    assert fresh._read_state()["step"] == 4  # the newest complete state, not step 0
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint"}


def test_incomplete_temp_folders_are_removed_and_the_checkpoint_kept(tiny_backbone_dir, tmp_path):
    tr = _trainer(tiny_backbone_dir, tmp_path)
    tr.save_checkpoint(1, 2, None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    partial = tmp_path / f".checkpoint.tmp-{int(dead.stdout)}-dead"
    partial.mkdir()
    (partial / "fidelity.safetensors").write_bytes(b"half")  # killed while writing: no manifest
    assert recover_folder(tmp_path / "checkpoint") is None
    assert not partial.exists() and load_state(tmp_path / "checkpoint")["step"] == 2


_KILL_SCRIPT = textwrap.dedent("""
    import os, shutil, signal, sys
    sys.path.insert(0, {repo!r})
    import torch
    torch.set_num_threads(1)
    import ifcsr.checkpoint as ck
    from tests.test_reliability import _Proxy, _trainer
    window = {window!r}
    n = [0]
    def replace(a, b):  # renames of ifcsr.checkpoint only: save at step 2 makes 1, at step 4 makes 2 and 3
        n[0] += 1
        if window == "between_renames" and n[0] == 3:   # step-4 save: old moved aside, new not in
            os.kill(os.getpid(), signal.SIGKILL)
        return os.replace(a, b)
    def rmtree(p, *a, **k):
        if window == "after_swap" and n[0] == 3 and str(p).endswith(".checkpoint.old"):
            os.kill(os.getpid(), signal.SIGKILL)       # new in place, old not yet removed
        return shutil.rmtree(p, *a, **k)
    ck.os = _Proxy(os, replace=replace)
    ck.shutil = _Proxy(shutil, rmtree=rmtree)
    from pathlib import Path
    tr = _trainer(Path({backbone!r}), Path({out!r}))
    tr.train_stage(1)
""")


@pytest.mark.parametrize("window", ["between_renames", "after_swap"])
def test_sigkill_inside_a_checkpoint_swap_resumes_bitwise(tiny_backbone_dir, tmp_path, window):
    """A real SIGKILL inside each window of the 2nd checkpoint write (step 4 of 6); the resumed run
    starts at step 4 (not 0) and ends with adapters and history bitwise equal to an uninterrupted run's."""
    ref = _trainer(tiny_backbone_dir, tmp_path / "ref")
    ref.train_stage(1)
    out = tmp_path / "killed"
    code = _KILL_SCRIPT.format(repo=str(REPO), window=window, backbone=str(tiny_backbone_dir), out=str(out))
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (out / LOCK_FILE).exists()  # the killed run's lock: stale, taken over below
    resumed = _trainer(tiny_backbone_dir, out)
    assert resumed._read_state()["step"] == 4
    resumed.train_stage(1, resume=True)
    assert [r["step"] for r in resumed.history] == list(range(6))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in ref.history]
    for k, v in lora_parameters(ref.model.unet, "fidelity").items():
        assert torch.equal(v, lora_parameters(resumed.model.unet, "fidelity")[k]), k


def test_files_and_folders_follow_the_umask(saved, tmp_path, model):
    old = os.umask(0o022)
    try:
        p = model.save(tmp_path / "ck")
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(q.stat().st_mode) for q in [p, *p.rglob("*")]}
    assert modes == {0o644, 0o755}, sorted(oct(m) for m in modes)


# --------------------------------------------------------------------------- one run per folder, NaN on any rank


def test_run_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": live.pid, "host": os.uname().nodename}))
        with pytest.raises(RunLockedError, match=f"pid {live.pid}"):
            with RunLock(tmp_path):
                pass
    finally:
        live.kill()
        live.wait()
    with RunLock(tmp_path) as lock:  # the owner is dead now: stale, taken over
        assert lock.stale["pid"] == live.pid
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
        with RunLock(tmp_path):  # re-entrant in one process (train_recipe -> Trainer.train_stage)
            pass
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


def test_second_run_into_one_folder_is_refused_by_the_cli(tmp_path, capsys):
    from ifcsr.cli.app import main

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.joinpath(LOCK_FILE).write_text(json.dumps({"pid": live.pid, "host": os.uname().nodename}))
        assert main(["train", "--preset", "smoke", "--out", str(tmp_path)]) == 2
    finally:
        live.kill()
        live.wait()
    assert "in use by another ifcsr run" in capsys.readouterr().err


class _TwoRanks:
    """The reduce of a 2-process accelerator whose other rank holds `other` (0 finite, 1 NaN)."""

    num_processes = 2

    def __init__(self, other):
        self.other = other

    def reduce(self, t, reduction):
        assert reduction == "sum"
        return t + self.other


def test_nan_on_one_rank_stops_every_rank():
    from ifcsr.train import check_finite_everywhere

    check_finite_everywhere(torch.tensor(0.5), "loss", _TwoRanks(0.0))
    with pytest.raises(NonFiniteError, match="on 1 process"):  # finite here, NaN on the other rank
        check_finite_everywhere(torch.tensor(0.5), "loss", _TwoRanks(1.0))
    with pytest.raises(NonFiniteError, match="on 2 process"):
        check_finite_everywhere(torch.tensor(float("nan")), "loss", _TwoRanks(1.0))


_DDP_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch, torch.distributed as dist
    sys.path.insert(0, {repo!r})
    from ifcsr.errors import NonFiniteError
    from ifcsr.train import check_finite_everywhere
    rank = int(sys.argv[1])
    dist.init_process_group("gloo", init_method="file://{store}", rank=rank, world_size=2)
    class Acc:
        num_processes = 2
        def reduce(self, t, reduction):
            dist.all_reduce(t)
            return t
    loss = torch.tensor(float("nan") if rank == 1 else 0.25)
    try:
        check_finite_everywhere(loss, "loss", Acc())
        print("continued")
    except NonFiniteError as e:
        print("stopped:", e)
    dist.destroy_process_group()
""")


def test_nan_on_one_rank_stops_every_rank_with_real_processes(tmp_path):
    code = _DDP_SCRIPT.format(repo=str(REPO), store=str(tmp_path / "store"))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for out, err in outs:
        assert out.startswith("stopped:"), (out, err[-1000:])


# --------------------------------------------------------------------------- train / infer command line


@pytest.mark.parametrize("argv, match", [
    (["--stages", "3"], "no stage 3"), (["--stages", "1,x"], "--stages"), (["--stages", ","], "no stage given"),
    (["--steps", "0"], "--steps 0"), (["--steps", "-5"], "--steps -5"), (["--k", "inf"], "k must be a finite"),
    (["--k", "nan"], "k must be a finite"), (["--k", "0"], "k must be a finite"),
    (["--stage2-degradation", "jpeg"], "unknown degradation 'jpeg'"),
    (["--stage2-degradation", "mixed:2"], "bicubic fraction"),
])
def test_train_cli_refuses_nonsense_before_training(tmp_path, capsys, argv, match):
    from ifcsr.cli.app import main

    assert main(["train", "--preset", "smoke", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert not (tmp_path / "o" / "final").exists()


def test_changed_config_in_a_finished_folder_is_refused(tmp_path):
    from ifcsr.recipes import check_same_run, smoke_preset, train_recipe

    cfg = smoke_preset()
    check_same_run(cfg, tmp_path, resume=True)  # records run_config.json
    check_same_run(cfg, tmp_path, resume=True)  # same config: fine
    k3 = replace(cfg, loss=replace(cfg.loss, k=3.0))
    with pytest.raises(ConfigError, match=r"loss.k: 7.0 -> 3.0.*--no-resume"):
        train_recipe(k3, tmp_path, progress=False, log=lambda *_: None)
    check_same_run(k3, tmp_path, resume=False)  # --no-resume starts over with the new config
    assert json.loads((tmp_path / "run_config.json").read_text())["loss"]["k"] == 3.0


def test_trainer_refuses_to_resume_under_another_config(tiny_backbone_dir, tmp_path):
    """The notebook way (Trainer(..., out_dir).train(resume=True)) with k changed: refused, not
    "already complete" with the old adapters."""
    tr = _trainer(tiny_backbone_dir, tmp_path)
    tr.save_checkpoint(1, 6, None)
    assert _trainer(tiny_backbone_dir, tmp_path)._completed_stage() == 2
    other = _trainer(tiny_backbone_dir, tmp_path)
    other.config = replace(other.config, loss=replace(other.config.loss, k=1.0))
    with pytest.raises(ConfigError, match=r"loss.k: 7.0 -> 1.0"):
        other.train(stages=(1, 2), resume=True)


def test_changed_config_against_a_folder_from_before_run_config(tmp_path, saved):
    from ifcsr.recipes import check_same_run

    _copy(saved, tmp_path / "checkpoint")
    have = TrainConfig.load(saved / "config.json")
    check_same_run(have, tmp_path, resume=True)
    (tmp_path / "run_config.json").unlink()
    with pytest.raises(ConfigError, match="model.color_fix"):
        check_same_run(replace(have, model=replace(have.model, color_fix=None)), tmp_path, resume=True)


def test_infer_output_names_are_unique(tmp_path, saved, capsys):
    from PIL import Image

    from ifcsr.cli.app import main
    from ifcsr.cli.infer import gamma_label, output_stems

    assert gamma_label(0.121) != gamma_label(0.124) and gamma_label(0.5) == "0.50"
    assert output_stems(["a/x.png", "b/x.png", "x.jpg", "y.png"]) == ["a_x", "b_x", "x_jpg", "y"]
    assert len(set(output_stems(["a/x.png", "b/a/x.png"]))) == 2
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.full((8, 8, 3), 60 if sub == "a" else 200, np.uint8)).save(tmp_path / sub / "x.png")
    out = tmp_path / "out"
    assert main(["infer", str(tmp_path / "a/x.png"), str(tmp_path / "b/x.png"), "--checkpoint", str(saved),
                 "--gamma", "0.121", "0.124", "--out", str(out), "--device", "cpu"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 * 4, names
    assert np.asarray(Image.open(out / "a_x_fidelity.png")).mean() < np.asarray(Image.open(out / "b_x_fidelity.png")).mean()
    for bad in (["--gamma", "1.5"], ["--gamma", "nan"]):
        assert main(["infer", str(tmp_path / "a/x.png"), "--checkpoint", str(saved), *bad]) == 2


def test_very_large_input_needs_a_flag(tmp_path, saved, capsys):
    from PIL import Image

    from ifcsr.cli.app import main
    from ifcsr.tiling import check_large, estimate_cost

    m = IFCSR.load(saved)
    cost = estimate_cost(m, (3000, 4000), device="cpu")
    assert cost["hr_size"] == (12000, 16000) and cost["memory_bytes"] > 10 * 2**30 and cost["seconds"] > 3600
    with pytest.raises(InputError, match=r"GiB.*h.*--force-large"):
        check_large(m, (3000, 4000), device="cpu")
    assert check_large(m, (3000, 4000), force=True, device="cpu") == cost
    Image.fromarray(np.zeros((1030, 1030, 3), np.uint8)).save(tmp_path / "big.png")
    assert main(["infer", str(tmp_path / "big.png"), "--checkpoint", str(saved), "--out", str(tmp_path / "o")]) == 2
    assert "--force-large" in capsys.readouterr().err and not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- one handler for every ifcsr error


def test_cli_prints_one_line_for_ifcsr_and_os_errors(tmp_path, capsys, saved):
    from ifcsr.cli.app import main

    assert main(["demo", "--photo", "nonsense", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "nonsense" in err and "not a sample photo" in err and "Traceback" not in err
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    assert main(["infer", str(tmp_path / "x.png"), "--checkpoint", str(saved), "--out", "/dev/null/x"]) == 2
    err = capsys.readouterr().err
    assert "/dev/null" in err and "not a folder" in err and "Traceback" not in err


def test_cli_programming_errors_say_so_and_show_the_traceback_under_debug(capsys, monkeypatch):
    import ifcsr.cli.infer
    from ifcsr.cli.app import main

    def buggy(args):
        return {}["no such key"]

    monkeypatch.setattr(ifcsr.cli.infer, "main", buggy)
    assert main(["infer", "x.png"]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "--debug" in err
    with pytest.raises(KeyError):
        main(["--debug", "infer", "x.png"])


def test_every_package_error_is_an_ifcsr_error_and_keeps_its_builtin_base():
    from ifcsr.data import load_sample
    from ifcsr.errors import MissingFileError, UnknownNameError

    with pytest.raises(UnknownNameError) as e:
        load_sample("nonsense")
    assert isinstance(e.value, KeyError) and isinstance(e.value, IFCSRError)
    assert str(e.value).startswith("unknown sample image")  # not KeyError's quoted repr
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(ConfigError, ValueError)
