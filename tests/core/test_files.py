"""files.writing: whole files under their final names or none, on a real file system."""

import os

import pytest
from meshdream.errors import OutputWriteError
from meshdream.files import writing


def test_writing_puts_whole_files_in_place_or_leaves_the_old_ones(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    b.write_text("old")
    with writing(a, b) as (temp_a, temp_b):
        assert temp_a.parent == tmp_path and temp_a.name.startswith(".partial-") and not a.exists()
        temp_a.write_text("A")
        temp_b.write_text("B")
    assert (a.read_text(), b.read_text()) == ("A", "B")
    umask = os.umask(0)
    os.umask(umask)
    assert a.stat().st_mode & 0o777 == 0o666 & ~umask  # a file as `open` makes it, not a private temporary
    with pytest.raises(ValueError):
        with writing(a, b) as (temp_a, temp_b):
            temp_a.write_text("half")
            raise ValueError("the writer failed")
    assert (a.read_text(), b.read_text()) == ("A", "B")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_a_refused_write_names_the_output_and_leaves_no_temporary(tmp_path):
    (tmp_path / "c.txt").mkdir()  # the system refuses the rename onto a folder
    with pytest.raises(OutputWriteError, match=r"^Could not write '.*c\.txt': Is a directory; check the path"):
        with writing(tmp_path / "c.txt") as (temp,):
            temp.write_text("x")
    assert [p.name for p in tmp_path.iterdir()] == ["c.txt"]
