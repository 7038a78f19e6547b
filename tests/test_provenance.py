"""Provenance of results (ifcsr.provenance): every figure and table in the repository is recorded
in analysis/results/MANIFEST.json, unchanged since it was recorded, and made from the
checkpoints the repository holds now. Hashing only: a second or two."""

import json
import re
import shutil
from pathlib import Path

import pytest

from ifcsr.provenance import (
    BUNDLE,
    MANIFEST,
    ROOT,
    check_manifest,
    checkpoint_sha256,
    covered_paths,
    mark_stale,
    read_manifest,
    record,
)


def test_the_repository_results_match_their_manifest():
    """The CI gate: a stale figure (made from another bundle), a hand-edited results file, or an
    unrecorded one fails here. Fix: `python analysis/regenerate.py --cheap` (or the one script)."""
    problems = check_manifest(ROOT)
    assert not problems, "\n".join(problems)


def test_readme_cites_only_recorded_results():
    """The README and the prose pages under docs/ (research notes moved out of the README) cite
    only results the manifest records; the prose pages themselves are not results."""
    entries = read_manifest(ROOT)
    prose = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
    assert len(prose) > 1
    for page in prose:
        cited = set(re.findall(r"(?:analysis/results|docs)/[\w./-]+\.(?:csv|png|md|json)", (ROOT / page).read_text()))
        if page == "README.md":
            assert "docs/demo.png" in cited
        results = cited - {MANIFEST} - set(prose)
        unrecorded = sorted(c for c in results if (ROOT / c).exists() and c not in entries)
        assert not unrecorded, f"{page} cites files the manifest does not record: {unrecorded}"


def _fake_repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / BUNDLE / "backbone").mkdir(parents=True)
    (root / BUNDLE / "realism.safetensors").write_bytes(b"phi-0")
    (root / BUNDLE / "backbone" / "unet.safetensors").write_bytes(b"unet-0")
    (root / "analysis" / "results").mkdir(parents=True)
    (root / "analysis" / "checkpoints" / "k1").mkdir(parents=True)
    (root / "analysis" / "checkpoints" / "k1" / "realism.safetensors").write_bytes(b"k1")
    (root / "docs").mkdir()
    return root


def test_checkpoint_sha256_sees_every_file_and_name_but_not_the_walk_order(tmp_path):
    root = _fake_repo(tmp_path)
    bundle = root / BUNDLE
    h0 = checkpoint_sha256(bundle)
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    assert checkpoint_sha256(copy) == h0  # content and names, not the folder's location
    (copy / "realism.safetensors").write_bytes(b"phi-1")
    assert checkpoint_sha256(copy) != h0
    shutil.rmtree(copy)
    shutil.copytree(bundle, copy)
    (copy / "realism.safetensors").rename(copy / "fidelity.safetensors")
    assert checkpoint_sha256(copy) != h0
    (copy / ".cache").write_text("editor droppings")  # hidden files are not part of a checkpoint
    h1 = checkpoint_sha256(copy)
    (copy / ".cache").unlink()
    assert checkpoint_sha256(copy) == h1
    with pytest.raises(FileNotFoundError, match="no such"):
        checkpoint_sha256(tmp_path / "nothing")


def test_check_catches_unrecorded_edited_and_stale_results(tmp_path):
    root = _fake_repo(tmp_path)
    table, fig = root / "analysis/results/table.csv", root / "docs/demo.png"
    table.write_text("gamma,psnr\n0,30.0\n")
    fig.write_bytes(b"png")
    assert check_manifest(root) == [f"{MANIFEST} is missing or empty"]
    record([table, fig], inputs=[BUNDLE], command="python analysis/make_table.py", root=root)
    record(root / "analysis/checkpoints/k1", inputs=[f"{BUNDLE}/backbone"], expensive=True,
           command="python analysis/train_ablations.py --kinds k1", root=root)
    assert check_manifest(root) == []
    entry = read_manifest(root)["analysis/results/table.csv"]
    assert entry["command"] == "python analysis/make_table.py" and entry["date"].endswith("Z")
    assert entry["inputs"] == {BUNDLE: checkpoint_sha256(root / BUNDLE)}

    (root / "analysis/results/extra.png").write_bytes(b"new figure")  # written without recording
    assert [p.split(":")[0] for p in check_manifest(root)] == ["analysis/results/extra.png"]
    (root / "analysis/results/extra.png").unlink()

    table.write_text("gamma,psnr\n0,31.0\n")  # edited by hand
    problems = check_manifest(root)
    assert len(problems) == 1 and "table.csv: sha256" in problems[0]
    record(table, inputs=[BUNDLE], command="python analysis/make_table.py", root=root)
    assert check_manifest(root) == []

    (root / BUNDLE / "realism.safetensors").write_bytes(b"phi-1")  # the bundle is retrained
    stale = check_manifest(root)
    assert sorted(p.split(":")[0] for p in stale) == ["analysis/results/table.csv", "docs/demo.png"]
    assert all(f"made from {BUNDLE}" in p for p in stale)
    with pytest.raises(ValueError, match="only expensive"):
        mark_stale(["docs/demo.png"], "no time", root=root)  # a figure must be regenerated
    record([table, fig], inputs=[BUNDLE], command="python analysis/make_table.py", root=root)
    assert check_manifest(root) == []

    (root / BUNDLE / "backbone" / "unet.safetensors").write_bytes(b"unet-1")  # the ablation's input too
    assert {p.split(":")[0] for p in check_manifest(root)} == {
        "analysis/results/table.csv", "docs/demo.png", "analysis/checkpoints/k1"}
    mark_stale(["analysis/checkpoints/k1"], "k = 1 ablation of the previous backbone, kept for reference", root=root)
    assert {p.split(":")[0] for p in check_manifest(root)} == {"analysis/results/table.csv", "docs/demo.png"}

    entries = json.loads((root / MANIFEST).read_text())["files"]
    entries["docs/demo.png"]["stale"] = "edited into the manifest by hand"
    (root / MANIFEST).write_text(json.dumps({"files": entries}))
    assert any("demo.png: only an expensive" in p for p in check_manifest(root))


def test_a_checkpoint_is_covered_as_one_folder_and_record_refuses_what_was_not_written(tmp_path):
    root = _fake_repo(tmp_path)
    (root / "analysis/checkpoints/k1/config.json").write_text("{}")
    assert covered_paths(root) == ["analysis/checkpoints/k1"]
    with pytest.raises(FileNotFoundError, match="not written"):
        record(root / "analysis/results/missing.csv", inputs=[], root=root)
    assert record(tmp_path / "elsewhere.csv", inputs=[], root=root) == {}  # outside the repository


def test_the_driver_runs_every_analysis_script_or_says_why_not():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "analysis" / "regenerate.py")
    driver = importlib.util.module_from_spec(spec)
    sys.modules["regenerate"] = driver  # dataclasses look their module up there
    try:
        spec.loader.exec_module(driver)
    finally:
        del sys.modules["regenerate"]
    run = {s.argv[0] for s in driver.STEPS}
    scripts = {f"analysis/{p.name}" for p in (ROOT / "analysis").glob("*.py")} - {"analysis/regenerate.py"}
    assert run <= scripts, "the driver runs scripts that do not exist"
    assert not sorted(scripts - run - set(driver.NOT_RERUN)), "analysis scripts neither run nor listed as not rerun"
    assert [s.name for s in driver.STEPS if s.cheap][:1] == ["bundled_quality"]
    assert driver.STEPS[0].name == "ablations" and not driver.STEPS[0].cheap  # before the figures that use them


def test_checksums_json_is_derived_and_does_not_change_the_hash(tmp_path):
    from ifcsr.checkpoint import MANIFEST as CHECKSUMS
    from ifcsr.checkpoint import write_manifest

    root = _fake_repo(tmp_path)
    h0 = checkpoint_sha256(root / BUNDLE)
    write_manifest(root / BUNDLE)  # what IFCSR.save writes last
    assert (root / BUNDLE / CHECKSUMS).is_file() and checkpoint_sha256(root / BUNDLE) == h0
