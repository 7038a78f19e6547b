"""The paper's quoted RealSR table (ifcsr.evaluation.tables): numbers as transcribed, and the
footnote on the one that could not be re-checked (issue 28, section 5)."""

import pandas as pd

from ifcsr.evaluation.tables import (
    PAPER_LPIPS_NOTE,
    PAPER_PEERS_REALSR,
    PAPER_REALSR,
    paper_notes,
    paper_reference_table,
    side_by_side,
)


def test_the_equal_lpips_of_gamma_0_and_osediff_is_kept_and_footnoted():
    # DESIGN.md section 1 quotes both as 0.2921: the number stays, and every rendering says it is unverified
    assert PAPER_REALSR[0.0]["lpips"] == PAPER_PEERS_REALSR["OSEDiff"]["lpips"] == 0.2921
    text = paper_reference_table(as_text=True)
    assert text.loc["IFCSR (paper) gamma=0", "LPIPS"] == text.loc["OSEDiff (paper)", "LPIPS"] == "0.2921"
    assert text.attrs["notes"] == [PAPER_LPIPS_NOTE] == paper_reference_table().attrs["notes"]
    assert "0.2921" in PAPER_LPIPS_NOTE and "not re-checked against the PDF" in PAPER_LPIPS_NOTE
    # no LPIPS shown, no footnote
    assert paper_notes(["psnr", "NIQE"]) == [] and paper_notes(["LPIPS"]) == [PAPER_LPIPS_NOTE]
    ours = pd.DataFrame({"psnr": [27.0, 26.0], "lpips": [0.3, 0.31]}, index=[0.0, 1.0])
    assert side_by_side(ours, {}).attrs["notes"] == [PAPER_LPIPS_NOTE]
    assert side_by_side(ours[["psnr"]], {}).attrs["notes"] == []
    assert side_by_side(ours.loc[[1.0]], {}).attrs["notes"] == []  # gamma 1 only: its LPIPS is not in doubt
