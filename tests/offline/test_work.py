"""tipbox-open's work folders: a live run's is never taken for a stopped run's."""

from __future__ import annotations

from pathlib import Path

from tipbox.offline.work import remove_abandoned, work_folder


def test_a_work_folder_in_use_is_left_alone_and_removed_when_its_run_ends(
        tmp_path: Path) -> None:
    with work_folder(tmp_path) as work:
        (work / "item.part").write_bytes(b"plaintext being decrypted")
        assert remove_abandoned(tmp_path) == []
        assert (work / "item.part").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_work_folder_from_before_work_folders_were_locked_is_abandoned(
        tmp_path: Path) -> None:
    old = tmp_path / ".tipbox-work-abc123"
    old.mkdir()
    (old / "item.part").write_bytes(b"plaintext")
    (tmp_path / "kept.txt").write_bytes(b"the journalist's")
    assert remove_abandoned(tmp_path) == [".tipbox-work-abc123"]
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]
