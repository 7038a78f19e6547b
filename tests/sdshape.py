"""An SD 2.1-base-shaped backbone at reduced width, saved as a diffusers folder (tests only).

The real block types (CrossAttnDownBlock2D x 3 + DownBlock2D, the mirror going up), two layers
per block, linear projections, 1024-d cross-attention from a (tiny) CLIP text encoder with its
tokenizer, the real VAE block types (x8 downsampling) and SD 2.1-base's own scheduler config
(PNDMScheduler, scaled_linear betas): everything but the widths is SD 2.1-base's, so the same
`load_backbone` code path (text encoder -> cached empty-prompt embedding) is exercised.
"""

import json
from pathlib import Path

import torch

from ifcsr.evaluation.bench_common import SD21_BASE_UNET, SD21_BASE_VAE

# stabilityai/stable-diffusion-2-1-base, scheduler/scheduler_config.json
SD21_BASE_SCHEDULER = {
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "trained_betas": None,
}


def build_sd_shaped_backbone(path, seed: int = 0) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    torch.manual_seed(seed)
    # 64 channels at the 1x1 bottom of a 64 px crop: GroupNorm(32) needs 2 values per group there
    unet = UNet2DConditionModel(**{**SD21_BASE_UNET, "block_out_channels": [32, 64, 64, 64],
                                   "attention_head_dim": [1, 2, 2, 2], "sample_size": 8})
    torch.nn.init.normal_(unet.conv_out.weight, std=0.02)  # so the UNet changes the latent
    vae = AutoencoderKL(**{**SD21_BASE_VAE, "block_out_channels": [32, 32, 64, 64], "sample_size": 64})
    unet.save_pretrained(path / "unet")
    vae.save_pretrained(path / "vae")
    (path / "scheduler").mkdir(parents=True, exist_ok=True)
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD21_BASE_SCHEDULER, indent=2))
    tok_dir = path / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "b</w>": 3, "a": 4, "b": 5, "ab": 6, "ab</w>": 7}
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\na b\n")
    CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77).save_pretrained(tok_dir)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=8, hidden_size=1024, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, max_position_embeddings=77, bos_token_id=0,
                                      eos_token_id=1, pad_token_id=1))
    te.save_pretrained(path / "text_encoder")
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"]}))
    return path


def write_photo_folder(path, n: int = 8, side: int = 96) -> Path:
    """n crops of the scikit-image training photos as PNG files."""
    from PIL import Image

    from ifcsr.data import load_sample

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    names = ["astronaut", "rocket", "hubble_deep_field", "motorcycle"]
    for i in range(n):
        im = load_sample(names[i % len(names)])
        y, x = 37 * i % (im.shape[0] - side), 53 * i % (im.shape[1] - side)
        Image.fromarray(im[y:y + side, x:x + side]).save(path / f"{i:04d}.png")
    return path
