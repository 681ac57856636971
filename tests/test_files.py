"""files.py: a file written whole or not at all, and two writers of one file (a run and a --report of it) that each
write it whole."""
import os
import stat

import pytest

import files


def test_a_file_is_replaced_whole_with_the_mode_open_gives_and_no_partial_file_left(tmp_path):
    path = tmp_path / 'results.summary.json'
    path.write_text('old')
    files.write_whole(path, lambda file: file.write('new'))
    assert path.read_text() == 'new' and os.listdir(tmp_path) == [path.name]
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~files.UMASK


def test_a_write_that_fails_keeps_the_old_file_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / 'results.summary.json'
    path.write_text('old')

    def fails(file):
        file.write('half')
        raise OSError(28, 'No space left on device')
    with pytest.raises(files.WriteError, match='results.summary.json cannot be written .No space left on device.'):
        files.write_whole(path, fails)
    assert path.read_text() == 'old' and os.listdir(tmp_path) == [path.name]


def test_two_writers_of_one_file_each_write_it_whole_and_the_last_rename_wins(tmp_path):
    path = tmp_path / 'results.points.png'

    def first(file):
        file.write('first, ')
        files.write_whole(path, lambda other: other.write('second'))  # another writer meanwhile, who ends first
        file.write('whole')
    files.write_whole(path, first)
    assert path.read_text() == 'first, whole' and os.listdir(tmp_path) == [path.name]


def test_the_longest_partial_name_is_as_long_as_any_partial_file(tmp_path, monkeypatch):
    path = tmp_path / 'results.csv'
    made = []
    real = files.tempfile.mkstemp
    monkeypatch.setattr(files.tempfile, 'mkstemp', lambda **options: made.append(real(**options)) or made[-1])
    files.write_whole(path, lambda file: file.write('x'))
    assert len(made[0][1]) == len(files.longest_partial_path(path))
