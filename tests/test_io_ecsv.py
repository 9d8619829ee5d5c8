"""The small ECSV reader gives what astropy reads, and refuses what it does not read."""

import pytest
from astropy.table import Table

from xbkg.io.ecsv import read_ecsv_columns
from xbkg.report.summary import rejected_runs

REASONS = ["not an off run (TARGET_NAME/OBJECT)", 'quoted "word", comma', "é ü, ✓",
           "two  spaces", "x"]


@pytest.mark.parametrize("delimiter", [" ", ","])
def test_reads_what_astropy_writes_and_reads(tmp_path, delimiter):
    path = tmp_path / "bg_rejected_runs.ecsv"
    table = Table({"OBS_ID": list(range(20000, 20000 + len(REASONS))), "REASON": REASONS})
    table.write(path, delimiter=delimiter)
    ours = read_ecsv_columns(path)
    back = Table.read(path)
    assert list(ours) == ["OBS_ID", "REASON"]
    assert [int(v) for v in ours["OBS_ID"]] == list(back["OBS_ID"])
    assert ours["REASON"] == [str(v) for v in back["REASON"]] == REASONS
    assert rejected_runs(tmp_path) == dict(zip(back["OBS_ID"].tolist(), REASONS))


def test_fields_are_kept_as_written(tmp_path):
    """Where astropy reads an empty field as masked, it stays an empty string."""
    path = tmp_path / "t.ecsv"
    Table({"A": ["", "b"]}).write(path)
    assert read_ecsv_columns(path) == {"A": ["", "b"]}


def test_refuses_what_it_does_not_read(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("OBS_ID,REASON\n1,x\n")
    ragged = tmp_path / "ragged.ecsv"
    ragged.write_text("# %ECSV 1.0\n# ---\nOBS_ID REASON\n1 x y\n")
    multidim = tmp_path / "multi.ecsv"
    Table({"A": [[1, 2], [3, 4]]}).write(multidim)
    tab = tmp_path / "tab.ecsv"
    tab.write_text("# %ECSV 1.0\n# ---\n# delimiter: '\\t'\nA\tB\n1\t2\n")
    for path in (plain, ragged, multidim, tab):
        with pytest.raises(ValueError):
            read_ecsv_columns(path)


def test_rejected_runs_falls_back_to_astropy(tmp_path):
    """A table the small reader refuses (a multidimensional column) is read by astropy."""
    path = tmp_path / "bg_rejected_runs.ecsv"
    Table({"OBS_ID": [7, 8], "REASON": ["failed", "off"], "X": [[1, 2], [3, 4]]}).write(path)
    with pytest.raises(ValueError):
        read_ecsv_columns(path)
    assert rejected_runs(tmp_path) == {7: "failed", 8: "off"}
