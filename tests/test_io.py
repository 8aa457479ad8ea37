"""Atomic writes: the destination is complete or untouched, and no temporary file remains."""

import os
import stat

import pytest

from reslab.io import append_csv, atomic_save_bytes, atomic_write, read_csv, rewrite_csv


def test_atomic_write_text_and_bytes(tmp_path):
    path = tmp_path / "out.txt"
    with atomic_write(path, encoding="utf-8") as handle:
        handle.write("héllo")
        assert not path.exists()  # nothing visible before the block ends
    assert path.read_text(encoding="utf-8") == "héllo"
    atomic_save_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(path, "wb") as handle:
        handle.write(b"half")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.bin"]


def test_new_files_get_normal_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    atomic_save_bytes(tmp_path / "f", b"x")  # not mkstemp's private 0o600
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o666 & ~umask


def test_rejects_read_and_append_modes(tmp_path):
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"), atomic_write(tmp_path / "f", "a"):
        pass


def test_csv_log_reads_complete_rows_only(tmp_path):
    log = tmp_path / "metrics.csv"
    append_csv(log, ("iteration", "loss"), [{"iteration": 1, "loss": 0.5}])
    append_csv(log, ("iteration", "loss"), [{"iteration": 2, "loss": 0.25}, {"iteration": 3}])
    assert read_csv(log) == [{"iteration": "1", "loss": "0.5"}, {"iteration": "2", "loss": "0.25"},
                             {"iteration": "3", "loss": ""}]
    with open(log, "a") as handle:  # a crash cut the next row inside its last field
        handle.write("4,0.12")
    assert [r["iteration"] for r in read_csv(log)] == ["1", "2", "3"]
    rewrite_csv(log, ("iteration", "loss"), read_csv(log)[:2])  # what a resume does
    assert log.read_bytes() == b"iteration,loss\r\n1,0.5\r\n2,0.25\r\n"
    with open(log, "a") as handle:  # rows with too few or too many fields
        handle.write("5\n6,0.1,extra\n7,0.1\n")
    assert [r["iteration"] for r in read_csv(log)] == ["1", "2", "7"]
    assert read_csv(tmp_path / "missing.csv") == []
