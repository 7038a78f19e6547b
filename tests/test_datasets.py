"""Getting the test sets (ifcsr.data.datasets): resolution, sha256-checked download, pinning, offline
messages. No network: a fake opener serves the files from memory.
"""

import hashlib
import io
import json
import urllib.error

import pytest
import torch

from ifcsr.data import datasets
from ifcsr.data.datasets import (
    DATASETS,
    DatasetDownloadError,
    DatasetNotFoundError,
    DatasetSpec,
    cache_root,
    fetch_dataset,
    resolve_dataset,
    verify_dataset,
)
from ifcsr.data.images import save_image


def _png(size, seed) -> bytes:
    g = torch.Generator().manual_seed(seed)
    buf = io.BytesIO()
    from PIL import Image

    from ifcsr.data.images import to_uint8

    Image.fromarray(to_uint8(torch.rand(3, size, size, generator=g))).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def served():
    """A tiny test set: 2 pairs + one output + a log, and a fake server with request counts."""
    files = {"test_LR/a_LR4.png": _png(4, 1), "test_HR/a_LR4.png": _png(16, 2),
             "test_LR/b_LR4.png": _png(4, 3), "test_HR/b_LR4.png": _png(16, 4),
             "results_osediff/a_LR4.png": _png(16, 5), "results_osediff/metrics/m.log": b"log\n"}
    return files


def _spec(files, *, hashes=True):
    manifest = dict(repository="someone/repo", commit="0123456789abcdef", folder="preset/x",
                    url="https://example.invalid/{commit}/{folder}/{file}", lr_size=4, hr_size=16,
                    files={k: hashlib.sha256(v).hexdigest() if hashes else None for k, v in files.items()})
    return DatasetSpec("tiny", "a tiny test set", "IFCSR_TINY", manifest)


class FakeServer:
    def __init__(self, files, prefix="https://example.invalid/0123456789abcdef/preset/x/"):
        self.files, self.prefix, self.requests = dict(files), prefix, []

    def __call__(self, url):
        self.requests.append(url)
        rel = url[len(self.prefix):]
        if not url.startswith(self.prefix) or rel not in self.files:
            raise urllib.error.HTTPError(url, 404, "not found", {}, None)
        return io.BytesIO(self.files[rel])


def test_fetch_downloads_checks_and_skips_what_is_there(served, tmp_path):
    server = FakeServer(served)
    spec = _spec(served)
    out = fetch_dataset(spec, folder=tmp_path / "tiny", opener=server, progress=False)
    assert len(server.requests) == len(served)
    for rel, data in served.items():
        assert (out / rel).read_bytes() == data
    assert verify_dataset(spec, out) == []
    assert not (out / datasets.PIN_FILE).exists()  # every hash came with the manifest
    fetch_dataset(spec, folder=out, opener=server, progress=False)
    assert len(server.requests) == len(served)  # nothing downloaded twice
    (out / "test_LR/a_LR4.png").write_bytes(_png(4, 99))  # a damaged local file is fetched again
    fetch_dataset(spec, folder=out, opener=server, progress=False)
    assert server.requests[-1].endswith("test_LR/a_LR4.png") and (out / "test_LR/a_LR4.png").read_bytes() == served[
        "test_LR/a_LR4.png"]


def test_a_file_with_the_wrong_sha256_is_not_installed(served, tmp_path):
    bad = dict(served, **{"test_HR/b_LR4.png": _png(16, 42)})
    with pytest.raises(DatasetDownloadError, match="test_HR/b_LR4.png: sha256 .* expected"):
        fetch_dataset(_spec(served), folder=tmp_path, opener=FakeServer(bad), progress=False)
    assert not (tmp_path / "test_HR/b_LR4.png").exists()
    assert not list(tmp_path.rglob("*.part"))


def test_unknown_hashes_are_pinned_by_the_first_verified_download(served, tmp_path):
    spec = _spec(served, hashes=False)
    out = fetch_dataset(spec, folder=tmp_path, opener=FakeServer(served), progress=False)
    pins = json.loads((out / datasets.PIN_FILE).read_text())
    assert pins == {k: hashlib.sha256(v).hexdigest() for k, v in served.items()}
    (out / "results_osediff/metrics/m.log").write_bytes(b"changed\n")
    assert verify_dataset(spec, out) == ["results_osediff/metrics/m.log: sha256 differs from the pin"]
    # a server that now serves other bytes is refused against the pin
    with pytest.raises(DatasetDownloadError, match="m.log: sha256"):
        fetch_dataset(spec, folder=out, opener=FakeServer(dict(served, **{"results_osediff/metrics/m.log": b"x"})),
                      progress=False)


def test_structural_check_refuses_wrong_sizes_before_pinning(served, tmp_path):
    wrong = dict(served, **{"test_HR/a_LR4.png": _png(12, 2)})
    spec = _spec(wrong, hashes=False)
    with pytest.raises(DatasetDownloadError, match="test_HR/a_LR4.png: 12x12, expected 16x16"):
        fetch_dataset(spec, folder=tmp_path, opener=FakeServer(wrong), progress=False)
    assert not (tmp_path / datasets.PIN_FILE).exists()


def test_offline_says_what_to_download_and_where(served, tmp_path, monkeypatch):
    monkeypatch.setenv("IFCSR_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetDownloadError) as err:
        fetch_dataset("realsr", progress=False)
    msg = str(err.value)
    assert "HF_HUB_OFFLINE=1" in msg and "ifcsr fetch-data realsr" in msg and "IFCSR_REALSR" in msg
    assert str(tmp_path / "c" / "datasets" / "realsr") in msg
    assert "https://raw.githubusercontent.com/cswry/OSEDiff/851cb889d0b71529b8f8fcb460417d0713d19ee6/" \
           "preset/datasets/benchmark_realsr/test_LR/" in msg

    def no_network(url):
        raise urllib.error.URLError("Name or service not known")

    with pytest.raises(DatasetDownloadError, match="Name or service not known.*ifcsr fetch-data tiny"):
        fetch_dataset(_spec(served), folder=tmp_path / "t", opener=no_network, progress=False)


def test_cache_root_honours_ifcsr_cache_then_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("IFCSR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "ifcsr"
    assert datasets.dataset_cache_dir("realsr") == tmp_path / "xdg" / "ifcsr" / "datasets" / "realsr"
    monkeypatch.setenv("IFCSR_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_resolve_env_then_cache_then_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("IFCSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("IFCSR_REALSR", raising=False)
    with pytest.raises(DatasetNotFoundError, match="ifcsr fetch-data realsr.*IFCSR_REALSR=DIR"):
        resolve_dataset("realsr")
    cached = tmp_path / "cache" / "datasets" / "realsr"
    (cached / "test_LR").mkdir(parents=True)
    (cached / "test_HR").mkdir()
    assert resolve_dataset("realsr") == cached
    mine = tmp_path / "mine"
    (mine / "test_LR").mkdir(parents=True)
    (mine / "test_HR").mkdir()
    monkeypatch.setenv("IFCSR_REALSR", str(mine))
    assert resolve_dataset("RealSR") == mine
    monkeypatch.setenv("IFCSR_REALSR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError, match="IFCSR_REALSR=.*no test_LR"):
        resolve_dataset("realsr")
    assert resolve_dataset(mine) == mine
    with pytest.raises(DatasetNotFoundError, match="expected test_LR/ and test_HR/"):
        resolve_dataset(tmp_path / "cache")


def test_bundled_manifests():
    realsr, drealsr = DATASETS["realsr"], DATASETS["drealsr"]
    lr = [f for f in realsr.files if f.startswith("test_LR/")]
    assert len(lr) == 100 and len([f for f in realsr.files if f.startswith("test_HR/")]) == 100
    assert all(isinstance(h, str) and len(h) == 64 for h in realsr.files.values())
    assert len([f for f in drealsr.files if f.startswith("test_LR/")]) == 93
    assert all(h is None for h in drealsr.files.values())  # pinned on first download, never invented
    assert realsr.url("test_HR/Canon_001_LR4.png") == (
        "https://raw.githubusercontent.com/cswry/OSEDiff/851cb889d0b71529b8f8fcb460417d0713d19ee6/"
        "preset/datasets/benchmark_realsr/test_HR/Canon_001_LR4.png")


def test_cli_fetch_data_verify(served, tmp_path, capsys):
    from ifcsr.cli.app import main

    # a folder that is not a realsr copy fails verification with the reasons
    save_image(torch.rand(3, 4, 4), tmp_path / "test_LR" / "x.png")
    assert main(["fetch-data", "realsr", "--verify", "--dir", str(tmp_path)]) == 1
    assert "missing" in capsys.readouterr().out
    assert main(["fetch-data", "realsr", "drealsr", "--dir", str(tmp_path)]) == 2
    assert "one test set at a time" in capsys.readouterr().err
