"""Atomic file writing (atp.flexoffer.files): what is left behind and with which mode."""

from __future__ import annotations

import os
import stat

import pytest

from atp.flexoffer.files import write_atomic, write_jsonl_atomic


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    """0666 less the umask, as `open(path, "w")` gives (0644 under 022), not mkstemp's 0600."""
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "a.json", "{}\n")
        write_jsonl_atomic(tmp_path / "b.jsonl", [{"x": 1}])
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for name in ("a.json", "b.jsonl", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_replacing_a_file_leaves_only_the_file(tmp_path):
    target = tmp_path / "sub" / "kpi.json"
    write_atomic(target, "one\n")
    write_atomic(target, "two\n")
    assert target.read_text() == "two\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["kpi.json"]


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(UnicodeEncodeError):
        write_atomic(tmp_path / "bad.txt", "\udcff")  # a lone surrogate cannot be written as UTF-8
    assert list(tmp_path.iterdir()) == []
