import os
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One thread: on a 2-core machine shared with anything else, OpenMP threads spin against each
# other (measured: a tiny VAE step 3.2 s with 2 threads, 0.19 s with 1).
torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*peft_config.*")


@pytest.fixture(autouse=True)
def one_thread():
    """Keep every test at one thread, whatever an earlier test set (bench runs set their own)."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory):
    """A random tiny backbone saved with save_pretrained (diffusers layout)."""
    from ifcsr.models import build_tiny_backbone, save_backbone

    bb = build_tiny_backbone(seed=0)
    # Random (not zero) output conv, so the UNet actually changes the latent.
    torch.manual_seed(1)
    torch.nn.init.normal_(bb.unet.conv_out.weight, std=0.02)
    path = tmp_path_factory.mktemp("tiny") / "backbone"
    save_backbone(bb, path)
    return path


PYIQA_SDIST_URL = ("https://files.pythonhosted.org/packages/20/d8/"
                   "8ecedf247cba5f4aa4a49f343a12ee53e95a8560e8c17479dfd78597dc23/pyiqa-0.1.16.tar.gz")
PYIQA_SDIST_SHA256 = "80fb913302585a774875c224b4f95068ac17bebd88f735876e6f0c3bb0988d34"


def _pyiqa_calibration_sdist():
    """pyiqa's calibration images live in its source package on PyPI, not in its wheel (and
    pyiqa's licence keeps us from committing them): fetch the sdist once into a cache."""
    import hashlib
    import urllib.request
    from pathlib import Path

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ifcsr" / "pyiqa-0.1.16.tar.gz"
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        data = urllib.request.urlopen(PYIQA_SDIST_URL, timeout=60).read()
        if hashlib.sha256(data).hexdigest() != PYIQA_SDIST_SHA256:
            return None
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cache)
    return cache


if not os.environ.get("IFCSR_PYIQA_CALIBRA"):
    try:
        _sdist = _pyiqa_calibration_sdist()
    except Exception:  # no registry: the tests that need it skip with their reason
        _sdist = None
    if _sdist is not None:
        os.environ["IFCSR_PYIQA_CALIBRA"] = str(_sdist)
