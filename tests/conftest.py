import os
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
warnings.filterwarnings("ignore", message=".*peft_config.*")


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
