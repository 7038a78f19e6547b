"""Run by tests/test_sdpath.py under `torchrun --nproc_per_node 2` (gloo, CPU); not a test itself.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py OUT BACKBONE DATA

1. `ifcsr train` on the SD 2.1-shaped backbone (the paper preset, chosen automatically), 3 steps
   per stage, a checkpoint every step, interrupted on both processes as stage 1 starts step 1;
2. the same command again in fresh models: stage 1 resumes at step 1 (the middle of epoch 0:
   8 images, 4 per step) and crosses into epoch 1, stage 2 runs 3 steps; each process writes
   ITS OWN final LoRA weights to OUT/rank{r}.safetensors;
3. a NaN loss on process 1 only: every process must stop with the same error, written to
   OUT/nan_rank{r}.txt (none may hang in the all-reduce).
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from ifcsr.cli import app as cli
from ifcsr.cli import train as train_cli
from ifcsr.models import adapter_state_dict
from ifcsr.recipes import train_recipe


def args_for(out, backbone, data, steps, stages):
    return ["train", "--backbone", backbone, "--data", data, "--out", out, "--steps", str(steps),
            "--stages", stages, "--checkpoint-every", "1", "--batch-size", "2", "--crop-size", "64", "--degradation", "bicubic",
            "--loss-layers", "0", "--mixed-precision", "no", "--num-workers", "1", "--device", "cpu"]


def main(out, backbone, data):
    from accelerate import PartialState

    torch.set_num_threads(1)
    out = Path(out)
    rank = PartialState(cpu=True).process_index
    run = str(out / "run")
    from ifcsr.train import Trainer

    step = Trainer._train_step

    def interrupted(self, stage, i, *a, **k):
        if (stage, i) == (1, 1):
            raise KeyboardInterrupt
        return step(self, stage, i, *a, **k)

    Trainer._train_step = interrupted
    assert cli.main(args_for(run, backbone, data, 3, "1,2")) == 130  # "interrupted"
    Trainer._train_step = step
    args = cli.build_parser().parse_args(args_for(run, backbone, data, 3, "1,2"))
    model, _ = train_recipe(train_cli.config_from_args(args), run, stages=(1, 2), device="cpu",
                            progress=False, log=lambda *_: None)
    save_file({f"{a}/{k}": v for a in ("fidelity", "realism") for k, v in adapter_state_dict(model.unet, a).items()},
              out / f"rank{rank}.safetensors")

    real = Trainer._stage_loss

    def nan_on_rank1(self, stage, lr, hr, gamma=None):
        loss, g = real(self, stage, lr, hr, gamma)
        return (loss * float("nan"), g) if rank == 1 else (loss, g)

    Trainer._stage_loss = nan_on_rank1
    try:
        train_recipe(train_cli.config_from_args(args), str(out / "nan"), stages=(1,), device="cpu",
                     progress=False, log=lambda *_: None)
    except FloatingPointError as err:  # ifcsr.errors.NonFiniteError
        (out / f"nan_rank{rank}.txt").write_text(str(err))


if __name__ == "__main__":
    main(*sys.argv[1:4])
