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


# --------------------------------------------------------------------------- README numbers
# Every README table, found by its header row: either it quotes results files, with where each
# number comes from, or it is listed in README_OTHER_TABLES (no measured numbers). A number
# matches when the file's value rounds to it: |file - README| <= half a unit of the README's
# last printed digit.
#
# A source: (results file, key columns, key) names the file row whose key columns hold the key;
# `columns` then gives the file's column for each README column. Where one README row mixes
# file columns and units, the source is per column: (file, key columns, key, file column,
# scale), scale converting the file's unit to the README's (seconds -> ms: 1e3). A README row
# lists its sources in the order its cells print them ("7.10 -> 5.35 (bicubic 7.85)": gamma 0,
# gamma 1, bicubic); a value the file leaves empty or "unavailable" must be printed as nothing.

PAPER = "analysis/results/paper_table.csv"
REALISM = "analysis/results/realism_check_summary.csv"
BENCH = "analysis/results/benchmarks.csv"

README_TABLES = {
    "| bundled checkpoint, gamma 0 -> 1 | NIQE | PIQE | PSNR-Y dB |": dict(
        cites=["analysis/realism_check.py", "analysis/paper_table.py"],
        columns={"NIQE": {REALISM: "niqe", PAPER: "NIQE"}, "PIQE": {REALISM: "piqe", PAPER: "PIQE*"},
                 "PSNR-Y dB": {REALISM: "psnr_y", PAPER: "PSNR"}},
        rows={
            "chelsea + coffee (whole, x4 bicubic; they chose this recipe, see below)":
                [(REALISM, ("set", "output"), ("chelsea+coffee", out)) for out in ("fidelity", "realism", "bicubic")],
            "RealSR, all 100 pairs":
                [(PAPER, ("method",), (m,)) for m in ("IFCSR gamma=0", "IFCSR gamma=1", "bicubic")],
        }),
    "| RealSR, 100 pairs, measured here | PSNR-Y | SSIM-Y | NIQE | PIQE (not in the paper) |": dict(
        cites=["analysis/results/paper_table.md"],
        columns={"PSNR-Y": {PAPER: "PSNR"}, "SSIM-Y": {PAPER: "SSIM"}, "NIQE": {PAPER: "NIQE"},
                 "PIQE (not in the paper)": {PAPER: "PIQE*"}},
        rows={
            "bicubic": [(PAPER, ("method",), ("bicubic",))],
            "OSEDiff (its published outputs)": [(PAPER, ("method",), ("OSEDiff (published outputs)",))],
            **{f"IFCSR, tiny backbone, gamma {g}": [(PAPER, ("method",), (f"IFCSR gamma={g}",))]
               for g in ("0", "0.2", "0.6", "1")},
            "Real-ESRGAN x4plus": [(PAPER, ("method",), ("Real-ESRGAN x4plus",))],
            "*quoted: IFCSR (paper, SD 2.1-base), gamma 0 / 1*":
                [(PAPER, ("method",), (f"IFCSR (paper) gamma={g}",)) for g in ("0", "1")],
        }),
    "| measure | 256x256 | 1024x1024 |": dict(
        cites=["analysis/results/benchmarks.csv"],
        rows={
            "infer both endpoints (once)": {
                "256x256": [(BENCH, ("measure", "size"), ("one-off: infer both endpoints", "256"), "seconds", 1)],
                "1024x1024": [(BENCH, ("measure", "size"), ("one-off: infer both endpoints (tiled)", "1024"),
                               "seconds", 1)]},
            **{readme: {f"{n}x{n}": [(BENCH, ("measure", "size"), (measure, str(n)), "seconds", 1e3)] for n in (256, 1024)}
               for readme, measure in (("IFCSR blend, torch float32", "IFCSR blend, torch float32 (out=)"),
                                       ("plain float32 copy of the output", "copy of the output, torch float32"),
                                       ("IFCSR blend, numpy uint8 (display)", "IFCSR blend, numpy uint8 (display)"))},
            "latent control as PiSA-SR (2 UNet + decode per change)": {
                "256x256": [(BENCH, ("measure", "size"), ("latent control (PiSA-SR): 2 UNet + decode", "256"),
                             "seconds", 1)],
                "1024x1024": [(BENCH, ("measure", "size"),
                               ("latent control (PiSA-SR): 2 UNet + decode (tiled)", "1024"), "seconds", 1)]},
            "weight interpolation as DNI (merge + UNet + decode per change)": {
                "256x256": [(BENCH, ("measure", "size"), ("weight interp. (DNI): merge + UNet + decode", "256"),
                             "seconds", 1)],
                "1024x1024": [(BENCH, ("measure", "size"),
                               ("weight interp. (DNI): merge + UNet + decode (tiled)", "1024"), "seconds", 1)]},
            "cheapest re-inference / blend": {
                f"{n}x{n}": [(BENCH, ("measure", "size"), ("cheapest re-inference / IFCSR blend", str(n)), "ratio", 1)]
                for n in (256, 1024)},
        }),
}
# Tables without measured numbers (versions, paths, messages): nothing to trace.
README_OTHER_TABLES = [
    "| what | where it comes from | cache |",
    "| cache | default | moved by |",
    "| you see | what happened | what to do |",
]


def _readme_tables() -> dict[str, tuple[int, list[dict]]]:
    """{header line: (its line index, rows as {column: cell})} of every Markdown table in the README."""
    lines = (ROOT / "README.md").read_text().splitlines()
    tables, i = {}, 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1]):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append(dict(zip(header, [c.strip() for c in lines[j].strip("|").split("|")])))
                j += 1
            tables[lines[i].strip()] = (i, rows)
            i = j
        else:
            i += 1
    return tables


def _file_value(path, key_cols, key, col, scale=1.0):
    import pandas as pd

    df = pd.read_csv(ROOT / path, dtype=str, keep_default_na=False)
    hit = df
    for c, v in zip(key_cols, key):
        hit = hit[hit[c] == v]
    assert len(hit) == 1, f"{path}: {len(hit)} rows with {dict(zip(key_cols, key))}"
    text = hit.iloc[0][col].strip()
    if text in ("", "unavailable", "nan"):
        return None
    return float(text) * scale


def _printed_numbers(cell: str) -> list[str]:
    return re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?", cell)


def _matches(printed: str, value: float) -> bool:
    decimals = len(printed.partition(".")[2])
    return abs(float(printed) - value) <= 0.5 * 10 ** -decimals + 1e-9 * max(1.0, abs(value))


def test_every_readme_table_is_traced_or_listed_as_holding_no_results():
    found = set(_readme_tables())
    assert set(README_TABLES) <= found, f"tables no longer in the README: {set(README_TABLES) - found}"
    untraced = found - set(README_TABLES) - set(README_OTHER_TABLES)
    assert not untraced, (f"README tables neither traced to their results files nor listed as holding no "
                          f"results (tests/test_provenance.py): {sorted(untraced)}")


@pytest.mark.parametrize("header", list(README_TABLES), ids=lambda h: h.split("|")[1].strip())
def test_readme_numbers_come_from_the_results_files_they_cite(header):
    spec = README_TABLES[header]
    start, rows = _readme_tables()[header]
    lines = (ROOT / "README.md").read_text().splitlines()
    near = "\n".join(lines[max(0, start - 12): start + len(rows) + 14])
    for cited in spec["cites"]:
        assert cited in near, f"the README no longer cites {cited} next to the table {header}"
    label = header.strip("|").split("|")[0].strip()
    assert [r[label] for r in rows] == list(spec["rows"]), "rows added, removed or renamed: update README_TABLES"
    checked = 0
    for row in rows:
        sources = spec["rows"][row[label]]
        for column, cell in row.items():
            if column == label:
                continue
            if isinstance(sources, dict):  # per column: (file, key columns, key, file column, scale)
                values = [_file_value(f, kc, k, col, scale) for f, kc, k, col, scale in sources[column]]
            else:  # per row: the file's column for this README column from `columns`
                values = [_file_value(f, kc, k, spec["columns"][column][f]) for f, kc, k in sources]
            values = [v for v in values if v is not None]
            printed = _printed_numbers(cell)
            assert len(printed) == len(values), f"{row[label]!r} / {column}: {cell!r} prints {printed}, files say {values}"
            for p, v in zip(printed, values):
                assert _matches(p, v), f"{row[label]!r} / {column}: README {p}, results file {v:.6g}"
                checked += 1
    assert checked >= len(rows)
