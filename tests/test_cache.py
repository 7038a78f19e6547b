"""Every cache path is decided by ifcsr.weights.cache and honours the documented variables."""

import subprocess
import sys
from pathlib import Path

import pytest

from ifcsr.weights import cache


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("IFCSR_CACHE", "XDG_CACHE_HOME", "TORCH_HOME", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_defaults_under_home(clean_env):
    home = clean_env / "home"
    assert cache.ifcsr_cache_dir("endpoints") == home / ".cache" / "ifcsr" / "endpoints"
    assert cache.hf_hub_cache_dir() == home / ".cache" / "huggingface" / "hub"


def test_xdg_cache_home_moves_everything(clean_env, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_env / "xdg"))
    assert cache.ifcsr_cache_dir() == clean_env / "xdg" / "ifcsr"
    assert cache.hf_hub_cache_dir() == clean_env / "xdg" / "huggingface" / "hub"
    from ifcsr.evaluation.endpoint_cache import default_cache_dir

    assert default_cache_dir() == clean_env / "xdg" / "ifcsr" / "endpoints"


def test_specific_variables_win(clean_env, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_env / "xdg"))
    monkeypatch.setenv("IFCSR_CACHE", str(clean_env / "mine"))
    monkeypatch.setenv("HF_HOME", str(clean_env / "hf"))
    assert cache.ifcsr_cache_dir("x") == clean_env / "mine" / "x"
    assert cache.hf_hub_cache_dir() == clean_env / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(clean_env / "hubcache"))
    assert cache.hf_hub_cache_dir() == clean_env / "hubcache"


def test_hf_rule_matches_huggingface_hub(clean_env, monkeypatch):
    """The path we name is the one huggingface_hub really uses (it reads the variables at import)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_env / "xdg"))
    code = "import huggingface_hub.constants as c; print(c.HF_HUB_CACHE)"
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert Path(theirs) == cache.hf_hub_cache_dir()


def test_torch_rule_matches_torch(clean_env, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_env / "xdg"))
    code = "import torch; print(torch.hub.get_dir())"
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    code = "from ifcsr.weights.cache import torch_hub_dir; print(torch_hub_dir())"  # torch not imported
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert Path(theirs) == Path(ours) == clean_env / "xdg" / "torch" / "hub"
