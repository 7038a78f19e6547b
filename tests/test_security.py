"""Security (issue 16, part 1): no file ifcsr reads can run code.

The trainer state is safetensors + JSON; an old-format trainer_state.pt is read only with
torch.load(weights_only=True); the package never unpickles.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from ifcsr.checkpoint import LEGACY_STATE, STATE_INDEX, STATE_TENSORS, load_state, save_state
from ifcsr.errors import CheckpointError, IFCSRError

PACKAGE = Path(__file__).resolve().parents[1] / "ifcsr"


class _Payload:
    """Unpickling this object runs exec(): it writes the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _write_payload(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"stage": 1, "step": 4, "optimizer": _Payload(marker), "torch_rng": torch.get_rng_state()}, path)


def test_crafted_payload_is_live_but_never_runs(tmp_path):
    marker = tmp_path / "marker"
    f = tmp_path / "checkpoint" / LEGACY_STATE
    _write_payload(f, marker)
    # The payload is real: an unrestricted load runs it (this is what ifcsr did before).
    torch.load(f, weights_only=False)
    assert marker.read_text() == "pwned"
    marker.unlink()
    with pytest.raises(CheckpointError, match="refused to load") as err:
        load_state(f.parent)
    assert isinstance(err.value, IFCSRError) and "--no-resume" in str(err.value)
    assert not marker.exists()


def test_crafted_payload_through_the_cli(tmp_path, tiny_backbone_dir, capsys):
    """`ifcsr train` resumes by default: a prepared OUT must not run anything."""
    from ifcsr.cli.app import main

    out = tmp_path / "out"
    shutil.copytree(tiny_backbone_dir, out / "backbone")  # stage 0 is reused, not trained
    marker = tmp_path / "marker"
    _write_payload(out / "checkpoint" / LEGACY_STATE, marker)
    assert main(["train", "--preset", "smoke", "--out", str(out), "--device", "cpu"]) == 2
    assert not marker.exists()
    assert "refused to load" in capsys.readouterr().err


def test_old_format_state_of_plain_tensors_still_resumes(tmp_path):
    opt_state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
                 "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]}
    f = tmp_path / LEGACY_STATE
    torch.save({"stage": 2, "step": 5, "optimizer": opt_state, "torch_rng": torch.get_rng_state()}, f)
    st = load_state(tmp_path)
    assert (st["stage"], st["step"]) == (2, 5)
    assert torch.equal(st["objects"]["optimizer"]["state"][0]["exp_avg"], torch.ones(2))
    assert st["rng"]["torch"].dtype == torch.uint8


def test_state_roundtrip_keeps_types_and_bits(tmp_path):
    tree = {"stage": 1, "step": 7, "rng": {"torch": torch.get_rng_state()},
            "objects": {"optimizer": {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.randn(3, 4)},
                                                "1": {"x": torch.zeros(1, dtype=torch.bfloat16)}},
                                      "param_groups": [{"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                                        "weight_decay": 0.01, "amsgrad": False, "foreach": None,
                                                        "maximize": False, "params": [0, 1], "inf": float("inf")}]}}}
    save_state(tmp_path, tree)
    assert {p.name for p in tmp_path.iterdir()} == {STATE_TENSORS, STATE_INDEX}
    doc = json.loads((tmp_path / STATE_INDEX).read_text())  # strict JSON: no NaN/Infinity literals
    json.loads((tmp_path / STATE_INDEX).read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert doc["format"] == 1 and len(doc["sha256"]) == 64
    back = load_state(tmp_path)
    opt = back["objects"]["optimizer"]
    assert set(opt["state"]) == {0, "1"}  # int and str keys both kept
    assert torch.equal(opt["state"][0]["exp_avg"], tree["objects"]["optimizer"]["state"][0]["exp_avg"])
    assert opt["state"]["1"]["x"].dtype == torch.bfloat16
    assert opt["param_groups"][0]["betas"] == (0.9, 0.999) and opt["param_groups"][0]["inf"] == float("inf")
    assert torch.equal(back["rng"]["torch"], tree["rng"]["torch"])


def test_tampered_or_incomplete_state_is_refused(tmp_path):
    save_state(tmp_path, {"stage": 1, "step": 2, "objects": {"w": torch.arange(4.0)}})
    blob = bytearray((tmp_path / STATE_TENSORS).read_bytes())
    blob[-1] ^= 1  # one flipped bit in the tensor data
    (tmp_path / STATE_TENSORS).write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_state(tmp_path)
    (tmp_path / STATE_TENSORS).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_state(tmp_path)
    (tmp_path / STATE_INDEX).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_state(tmp_path)
    with pytest.raises(CheckpointError, match="cannot store"):
        save_state(tmp_path, {"stage": 1, "step": 0, "bad": object()})


def test_named_extra_states_resume_bitwise(tiny_backbone_dir, tmp_path):
    """A stage with more state (a discriminator and its optimizer) saves and resumes it by name."""
    from ifcsr.config import LossConfig, ModelConfig, TrainConfig
    from ifcsr.models import IFCSR, load_backbone
    from ifcsr.train import Trainer, quick_config

    torch.manual_seed(0)
    disc = torch.nn.Linear(3, 2)
    dopt = torch.optim.AdamW(disc.parameters(), lr=1e-2)
    disc(torch.randn(4, 3)).sum().backward()
    dopt.step()
    cfg = TrainConfig(model=ModelConfig(), loss=LossConfig(feature_net="vgg-random"),
                      stage1=quick_config(steps=3).stage1)
    model = IFCSR(load_backbone(tiny_backbone_dir), cfg)
    tr = Trainer(model, None, config=cfg, out_dir=tmp_path, progress=False, device="cpu")
    tr.extra_state.update(discriminator=disc, discriminator_optimizer=dopt)
    params = list(model.unet.parameters())[:1]
    opt = torch.optim.AdamW(params, lr=1e-3)
    tr.save_checkpoint(1, 2, opt)
    assert not (tmp_path / "checkpoint" / LEGACY_STATE).exists()

    disc2 = torch.nn.Linear(3, 2)
    dopt2 = torch.optim.AdamW(disc2.parameters(), lr=1e-2)
    tr2 = Trainer(IFCSR(load_backbone(tiny_backbone_dir), cfg), None, config=cfg, out_dir=tmp_path,
                  progress=False, device="cpu")
    tr2.extra_state.update(discriminator=disc2, discriminator_optimizer=dopt2)
    tr2._set_trainable(1)
    assert tr2._resume(1, torch.optim.AdamW(list(tr2.model.unet.parameters())[:1], lr=1e-3)) == 2
    for k, v in disc.state_dict().items():
        assert torch.equal(v, disc2.state_dict()[k])
    assert torch.equal(dopt.state_dict()["state"][0]["exp_avg_sq"], dopt2.state_dict()["state"][0]["exp_avg_sq"])
    # a state without a registered name is an error, not a silent fresh start
    tr3 = Trainer(IFCSR(load_backbone(tiny_backbone_dir), cfg), None, config=cfg, out_dir=tmp_path,
                  progress=False, device="cpu")
    tr3.extra_state["critic"] = torch.nn.Linear(1, 1)
    with pytest.raises(CheckpointError, match="critic"):
        tr3._resume(1, torch.optim.AdamW(list(tr3.model.unet.parameters())[:1], lr=1e-3))


FORBIDDEN = [
    (r"weights_only\s*=\s*False", "weights_only=False"),
    (r"\bpickle\b|\bcPickle\b|\bdill\b|\bcloudpickle\b", "pickle"),
    (r"allow_pickle\s*=\s*True", "allow_pickle=True"),
    (r"yaml\.(unsafe_)?load\s*\(", "yaml.load"),
    (r"\bmarshal\.loads?\b|\bshelve\b|\bjoblib\.load\b", "marshal/shelve/joblib"),
]


def test_package_never_unpickles():
    hits = []
    for f in sorted(PACKAGE.rglob("*.py")):
        text = f.read_text()
        for pattern, name in FORBIDDEN:
            hits += [f"{f.name}:{text.count(chr(10), 0, m.start()) + 1}: {name}" for m in re.finditer(pattern, text)]
        # every torch.load names weights_only=True in the same call
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            if "weights_only=True" not in call:
                hits.append(f"{f.name}:{text.count(chr(10), 0, m.start()) + 1}: torch.load without weights_only=True")
    assert not hits, hits


def test_the_grep_catches_what_it_forbids(tmp_path):
    bad = "x = torch.load(f, weights_only=False)\nimport pickle\nnp.load(f, allow_pickle=True)\nyaml.load(s)\n"
    found = [name for pattern, name in FORBIDDEN if re.search(pattern, bad)]
    assert found == ["weights_only=False", "pickle", "allow_pickle=True", "yaml.load"]
