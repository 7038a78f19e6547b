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


# ----------------------------------------------------------------------------- slow tests
# The README's plain `pytest` leaves these out (they are "deselected"); CI runs them too:
# `.ci/run` sets IFCSR_RUN_SLOW=1, as it sets IFCSR_RUN_NOTEBOOKS/IFCSR_RUN_BROWSER. `-m slow`
# runs only them, and a test named on the command line (FILE::NAME) always runs. Seconds: one
# `--durations=0` run of the whole suite on the project's 2-core machine with a training job on
# the other core (idle is about 1.5-2x faster). Everything else took under 5 s there.
SLOW = {
    # multi-process: subprocesses, torch.distributed, SIGKILL mid-write
    "tests/test_sdpath.py::test_two_processes_equal_one_process_with_accumulation": 61,
    "tests/test_bench.py::test_subprocess_parts_measure_training_and_peak_rss": 63,
    "tests/test_reliability.py::test_sigkill_inside_a_checkpoint_swap_resumes_bitwise": 57,  # 2 cases
    "tests/test_viz.py::test_import_ifcsr_pulls_in_neither_matplotlib_nor_ipywidgets": 10,
    "tests/test_first_contact.py::test_a_command_that_loads_the_model_prints_nothing_on_stderr_offline": 20,
    "tests/test_first_contact.py::test_demo_prints_nothing_on_stderr_offline": 90,
    "tests/test_autogamma.py::test_infer_auto_gamma_infers_once_then_never_touches_the_model": 17,
    # whole-image metrics and whole-image inference of the bundled checkpoint
    "tests/test_realsr_calibration.py": 39,  # every test: 100 RealSR images scored once per module
    "tests/test_artefacts.py::test_bundled_realism_endpoint_is_texture_not_artefacts": 60,  # shares the
    "tests/test_artefacts.py::test_bundled_checkpoint_trades_distortion_for_perception": 1,  # endpoints
    "tests/test_readme.py::test_readme_python_snippet_runs": 21,
    "tests/test_recipe.py::test_demo_writes_every_file": 28,
    "tests/test_recipe.py::test_demo_on_user_image_and_bad_file": 7,
    "tests/test_sweep.py::test_sweep_calls_network_once_per_image_and_writes_csv_and_figures": 7,
    "tests/test_viz.py::test_figures_build": 6,
    "tests/test_tiling.py::test_tiled_and_untiled_inference_agree": 37,
    "tests/test_tiling.py::test_per_tile_groupnorm_is_what_the_shared_statistics_fix": 33,
    "tests/test_tiling.py::test_tiled_batched_sequential_and_branch_agree": 30,
    "tests/test_tiling.py::test_color_fix_brings_the_output_mean_to_the_lr": 29,  # 2 cases
    "tests/test_tiling.py::test_wavelet_levels_set_the_band_taken_from_the_lr": 12,
    # training runs
    "tests/test_core.py::test_checkpoint_resume_continues": 38,  # 2 cases
    "tests/test_core.py::test_a_few_dozen_steps_lower_the_loss": 27,  # 2 cases
    "tests/test_core.py::test_stage2_init_from_fidelity": 11,
    "tests/test_recipe.py::test_stage0_lowers_reconstruction_and_denoising_losses": 9,
    "tests/test_recipe.py::test_fidelity_from_retrains_only_stage2": 6,
    "tests/test_adversarial.py::test_stage1_is_adversarial_free": 9,  # the three share a feature net
    "tests/test_adversarial.py::test_stage2_adversarial_term_changes_realism_and_trains_d": 3,
    "tests/test_adversarial.py::test_stage2_resume_restores_discriminator_exactly": 7,
    "tests/test_sdpath.py::test_sd_shaped_backbone_loads_trains_both_stages_and_infers": 5,
    "tests/test_sdpath.py::test_sd_bench_logic_on_a_small_model_on_cpu": 6,
}


def _slow_selected(config) -> bool:
    return "slow" in (config.getoption("markexpr") or "") or os.environ.get("IFCSR_RUN_SLOW") == "1"


def _is_slow(item) -> bool:
    base = item.nodeid.split("[")[0]
    return base in SLOW or base.split("::")[0] in SLOW or item.get_closest_marker("slow") is not None


def _named_on_the_command_line(config) -> set[str]:
    """Node ids (without parameters) of the tests named as FILE::NAME in the arguments."""
    from pathlib import Path

    named = set()
    for arg in config.args:
        if "::" in arg:
            path, _, rest = arg.partition("::")
            try:
                rel = Path(path).resolve().relative_to(config.rootpath).as_posix()
            except ValueError:
                continue
            named.add(f"{rel}::{rest}".split("[")[0])
    return named


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
    whole_files = not any("::" in a for a in config.args) and not config.getoption("keyword")
    if whole_files:  # a renamed or removed test must leave SLOW too, or the split is no longer true
        files = {i.nodeid.split("::")[0] for i in items}
        ids = {i.nodeid.split("[")[0] for i in items} | files
        stale = [k for k in SLOW if k.split("::")[0] in files and k not in ids]
        if stale:
            raise pytest.UsageError(f"tests/conftest.py SLOW names tests that do not exist: {stale}")
    if _slow_selected(config):
        return
    named = _named_on_the_command_line(config)
    slow = [i for i in items if i.get_closest_marker("slow") and i.nodeid.split("[")[0] not in named]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [i for i in items if i not in slow]
        config.stash[_SLOW_LEFT_OUT] = len(slow)


_SLOW_LEFT_OUT = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter, config):
    n = config.stash.get(_SLOW_LEFT_OUT, 0)
    if n:
        terminalreporter.write_line(f"{n} slow tests (training runs, several processes, whole images) were left out; "
                                    "all tests: IFCSR_RUN_SLOW=1 .venv/bin/python -m pytest")


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
