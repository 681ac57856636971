"""A full disk, a folder that loses its permissions, a stop while rows are synced: one line, whole files, and the
same command finishes the run."""
import contextlib
import errno
import os
import signal
import types

import pytest
from conftest import read_rows, refused, rows_in, same_rows, small_run, snapshot

import files
import report
import results
import test as experiment

RUN = small_run()  # 16 evaluations; results are reproducible on CPU (conftest's uninterrupted: never stopped)


# A full disk, a folder that loses its permissions

@contextlib.contextmanager
def writes_failing(first, error=errno.ENOSPC, ending='.csv'):
    """From the `first` write of the run's files on (1: the first), every one fails with `error`, as on a full disk:
    an append to a file whose name ends in `ending` after writing half its bytes, a file written whole as it opens
    (its partial file made). Yields the count of writes so far."""
    count, real_write, real_open = [0], os.write, open

    def fails():
        count[0] += 1
        return count[0] >= first

    def write(fd, data):
        if os.readlink(f'/proc/self/fd/{fd}').endswith(ending) and fails():
            real_write(fd, bytes(data)[:len(data) // 2])
            raise OSError(error, os.strerror(error))
        return real_write(fd, data)

    def open_whole(path, *args, **kwargs):
        file = real_open(path, *args, **kwargs)
        if ending == '.csv' and fails():
            file.close()
            raise OSError(error, os.strerror(error))
        return file
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(results, 'os', types.SimpleNamespace(**{**vars(os), 'write': write}))
        patch.setattr(files, 'open', open_whole, raising=False)
        yield count


# The writes of RUN with --population 3: the configuration, the 4 Bayesian rounds' appends each followed by the
# searches' state, the 3 Sobol populations' appends, then (from write 13 on, the report's) summary.json, summary.md
# and the 4 plots
WRITES = {1: 'results.config.json', 2: 'results.csv', 3: 'results.searches.pickle', 6: 'results.csv',
          10: 'results.csv', 12: 'results.csv', 13: 'results.summary.json', 14: 'results.summary.md',
          18: 'results.sobol-vs-random.png'}


@pytest.mark.parametrize('first_failing, error', [*((write, errno.ENOSPC) for write in WRITES), (13, errno.EACCES)])
def test_a_full_disk_ends_the_run_in_one_line_with_whole_files_and_the_same_command_finishes_it(
        first_failing, error, pretend_training, tmp_path, capsys):
    arguments = [*RUN, '--population', '3', '--output', str(tmp_path / 'results.csv')]
    experiment.main([*arguments[:-1], str(tmp_path / 'uninterrupted.csv')])
    with writes_failing(first_failing, error) as writes:
        with pytest.raises(SystemExit) as exit:
            experiment.main(arguments)
    stderr = capsys.readouterr().err
    assert writes[0] == first_failing and exit.value.code == 1 and stderr.count('\n') == 1
    assert f'{tmp_path / WRITES[first_failing]} cannot be written ({os.strerror(error)}); ' in stderr
    names = sorted(path.name for path in tmp_path.iterdir())
    assert not [name for name in names if name.endswith(('.partial', '.lock'))], names
    if first_failing <= 2:  # nothing recorded: the new run's files are gone
        assert 'results.csv' not in names and 'results.config.json' not in names
    else:
        assert (tmp_path / 'results.csv').read_bytes().endswith(b'\n')  # whole rows only
    then = f'python test.py --report {tmp_path / "results.csv"}' if first_failing >= 13 else 'run the same command'
    assert f'evaluations are saved in {tmp_path / "results.csv"}: make room (or restore the permission), then {then}' \
        in stderr
    experiment.main(arguments)
    assert same_rows(tmp_path / 'results.csv', tmp_path / 'uninterrupted.csv')


def test_a_report_that_cannot_write_keeps_the_summaries_it_had(pretend_training, tmp_path, capsys):
    output = tmp_path / 'results.csv'
    experiment.main([*RUN, '--output', str(output)])
    before = snapshot(tmp_path)
    with writes_failing(2):  # summary.md
        with pytest.raises(SystemExit) as exit:
            experiment.main(['--report', str(output)])
    stderr = capsys.readouterr().err
    assert exit.value.code == 1 and stderr.count('\n') == 1
    assert stderr.endswith(f'--report: {tmp_path}/results.summary.md cannot be written (No space left on device); '
                           'its previous version is kept\n')
    assert snapshot(tmp_path) == before


def test_a_run_refused_for_lack_of_room_for_its_lock_leaves_no_lock_file(tmp_path, count_trained, capsys):
    with writes_failing(1, ending='.lock'):
        stderr = refused(experiment.main, [*RUN, '--output', str(tmp_path / 'results.csv')], capsys)
    assert 'results.lock cannot be used as the lock of' in stderr and '(No space left on device)' in stderr
    assert list(tmp_path.iterdir()) == [] and count_trained == []


def test_a_lock_file_that_cannot_be_removed_is_left_and_blocks_no_later_run(pretend_training, tmp_path, monkeypatch):
    arguments = [*RUN, '--output', str(tmp_path / 'results.csv')]

    def unlink(path):
        raise PermissionError(errno.EACCES, 'Permission denied', path)
    with monkeypatch.context() as patch:
        patch.setattr(results, 'os', types.SimpleNamespace(**{**vars(os), 'unlink': unlink}))
        experiment.main(arguments)  # the folder made read-only before the run ends
    assert (tmp_path / 'results.lock').exists()
    experiment.main(arguments)  # resumes a finished file
    assert not (tmp_path / 'results.lock').exists() and len(read_rows(tmp_path / 'results.csv')) == 16


@pytest.mark.parametrize('stop_signal', [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_rows_are_synced_keeps_them(stop_signal, stop_handlers, pretend_training, tmp_path, monkeypatch,
                                                 capsys):
    output = tmp_path / 'results.csv'
    synced = []

    def fsync(fd):  # the signal arrives after the rows are written, when a reader can already see them
        if os.readlink(f'/proc/self/fd/{fd}').endswith('.csv') and len(synced) == 2:
            signal.raise_signal(stop_signal)
        synced.append(fd)
        os.fsync(fd)
    monkeypatch.setattr(results, 'os', types.SimpleNamespace(**{**vars(os), 'fsync': fsync}))
    with pytest.raises(SystemExit) as exit:
        experiment.main([*RUN, '--output', str(output)])
    assert exit.value.code == 128 + stop_signal and len(synced) == 3
    assert capsys.readouterr().err.endswith(f'{len(read_rows(output))} of 16 evaluations are saved in {output}; run '
                                            'the same command again to resume\n')
    assert len(read_rows(output)) == rows_in(output) > 0 and output.read_bytes().endswith(b'\n')


@pytest.mark.parametrize('stopped_in', ['results.open_results', 'command_line.load_data',
                                        'report.report_results'])
def test_a_stop_before_or_after_the_training_is_one_line(stopped_in, pretend_training, tmp_path, monkeypatch, capsys):
    arguments = [*RUN, '--output', str(tmp_path / 'results.csv')]
    if stopped_in == 'report.report_results':  # --report of a finished run
        experiment.main(arguments)
        arguments = ['--report', str(tmp_path / 'results.csv')]
    before = snapshot(tmp_path)
    module, name = stopped_in.split('.')

    def stopped(*_, **__):
        raise KeyboardInterrupt
    monkeypatch.setattr({'results': results, 'command_line': experiment.command_line, 'report': report}[module], name,
                        stopped)
    with pytest.raises(SystemExit) as exit:
        experiment.main(arguments)
    stderr = capsys.readouterr().err
    assert exit.value.code == 130 and stderr.count('\n') == 1 and ': interrupted: ' in stderr
    assert stderr.endswith({'results.open_results': 'nothing was written\n',
                            'command_line.load_data': 'run the same command again to resume\n',
                            'report.report_results': 'the others as they were\n'}[stopped_in])
    assert snapshot(tmp_path) == before


def test_an_output_named_like_a_flag_resumes(pretend_training, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        experiment.main([*RUN, '--output=-r.csv'])
    assert len(read_rows(tmp_path / '-r.csv')) == 16
