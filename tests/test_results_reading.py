"""The results file read back (results.py): a file, configuration or name that is not what the run would write is
refused in one line and left as it was; one writer per results file."""
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import (ROOT, config_path, copy_of_finished_run, folder_without_permissions, pretend_population,
                      read_rows, refused, rows_in, same_rows, small_run, snapshot, start_and_stop)
from hypothesis import event, given, settings
from hypothesis import strategies as st

import network
import report
import results
import run_settings
import test as experiment

RUN = small_run()  # 16 evaluations; results are reproducible on CPU (conftest's uninterrupted: never stopped)


def garbage(lines):
    """The uninterrupted file's lines with row 3 (line 4) replaced by garbage."""
    return ''.join(lines[:3] + ['bayesian,1,1,,,,1,not-a-seed,0.01,0,1,0.5,1,0.5,0.1\n'] + lines[4:])


def swap_seeds(lines):
    """Two rows exchanged whole except for their seeds: every field is a valid number."""
    first, second = lines[1].split(','), lines[2].split(',')
    first[7], second[7] = second[7], first[7]
    return ''.join(lines[:1] + [','.join(first), ','.join(second)] + lines[3:])


MALFORMED = [
    (garbage, "line 4: seed 'not-a-seed' is not a number"),
    (swap_seeds, 'line 2 (bayesian repetition 1 iteration 1): seed is '),
    (lambda lines: ''.join(lines + lines[5:6]), 'is recorded twice'),
    (lambda lines: ''.join(['Method,Repetition\n'] + lines[1:]), 'line 1: the header is not'),
    (lambda lines: ''.join(lines[:6] + ['\n'] + lines[6:]), 'line 7: 0 fields instead of 15'),
    (lambda lines: ''.join(lines[:6]) + 'Note: rerun later', "its last line, 'Note: rerun later'"),
    (lambda lines: 'an unrelated note', "its last line, 'an unrelated note'"),
    (lambda lines: ''.join(lines[:6]).replace('bayesian,2,1', 'random,2,1'), "method 'random' is not one of"),
    (lambda lines: ''.join(lines[:6]).replace(',1,1,', ',1,7,'), 'line 2: iteration 7 is outside 1..4'),
    (lambda lines: ''.join(lines[:6]).replace('bayesian,1,1,,', 'bayesian,1,1,1,'),
     'line 2: repeat_of 1 is not an earlier iteration of a guided search'),
    (lambda lines: ''.join(lines[:6]).replace('bayesian,1,1,,,,', 'bayesian,1,1,,1,1,'),
     'line 2 (bayesian repetition 1 iteration 1): bracket is 1, where the plan makes it empty'),
    (lambda lines: ''.join(lines[:6]).replace('bayesian,1,1,,,,1,', 'bayesian,1,1,,,,2,'),
     'line 2: epochs 2 is outside 1..1'),
    (lambda lines: ''.join(lines[:3] + [lines[3].replace('\n', '\r\n')] + lines[4:]), "line 4: seconds '"),
    (lambda lines: ''.join(lines[:3] + [lines[3].replace(',', ', ')] + lines[4:]), "line 4: repetition ' 1'"),
    (lambda lines: ''.join(lines[:3] + [lines[3].replace(',0.', ', 0.', 1)] + lines[4:]), 'line 4: learning_rate'),
    (lambda lines: ''.join(lines[:3]).replace(',901243215,', ',0901243215,'), "line 2: seed '0901243215'"),
    (lambda lines: ''.join(lines[:3]).replace(',901243215,', ',٩٠١٢٤٣٢١٥,'), "line 2: seed '٩٠١٢٤٣٢١٥'"),
    (lambda lines: ''.join(lines[:3]).replace(',901243215,', ',901_243_215,'), "line 2: seed '901_243_215'"),
    (lambda lines: ''.join(lines[:6]) + 'sobol,2,4,,,,1,1670527063,0.0489,zz', "its last line, 'sobol,2,4,,,,1,16"),
]


@pytest.mark.parametrize('damage, named', MALFORMED, ids=[named for _, named in MALFORMED])
def test_a_results_file_with_anything_but_a_cut_last_line_wrong_is_refused_and_left_unchanged(
        uninterrupted, tmp_path, capsys, damage, named):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    output.write_text(damage(output.read_text().splitlines(keepends=True)))
    before = snapshot(tmp_path)
    stderr = refused(experiment.main, [*RUN, '--population', '3', '--output', str(output)], capsys)
    assert named in stderr and 'the file is left as it is' in stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('arguments, named', [
    (['--epochs', '2'], 'epochs 1 (now 2)'),
    (['--learning-rate-bounds', '0.001', '0.1'], 'learning_rate_bounds [0.0001, 0.1] (now [0.001, 0.1])'),
    (['--repetitions', '1', '--seed', '4'], 'repetitions 2 (now 1); seed 0 (now 4)'),
    (['--repetitions', '3', '--seed', '4'], 'seed 0 (now 4)'),  # more repetitions alone extend the run
    (['--method', 'sobol'], "method ['bayesian', 'sobol'] (now ['sobol'])"),
    (['--training-size', '500'], 'training_size None (now 500)'),
])
def test_resuming_with_another_configuration_is_refused_naming_the_differences(uninterrupted, tmp_path, capsys,
                                                                               arguments, named):
    output, _ = copy_of_finished_run(uninterrupted, tmp_path)
    before = snapshot(tmp_path)
    stderr = refused(experiment.main, [*RUN, *arguments, '--output', str(output)], capsys)
    assert f'{output} was made with another configuration ({named}' in stderr and '--fresh' in stderr
    assert snapshot(tmp_path) == before


def test_another_library_version_is_another_configuration(uninterrupted, tmp_path, capsys):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    saved = json.loads(config.read_text())
    assert saved['versions']['bayesian-optimization'] == '3.4.0' and saved['epochs'] == 1
    saved['versions']['bayesian-optimization'] = '1.4.3'
    config.write_text(json.dumps(saved))
    before = snapshot(tmp_path)
    stderr = refused(experiment.main, [*RUN, '--output', str(output)], capsys)
    assert "bayesian-optimization version '1.4.3' (now '3.4.0')" in stderr
    assert snapshot(tmp_path) == before


def test_a_file_saved_before_the_training_size_was_a_setting_resumes_and_reports_as_one_of_all_images(
        uninterrupted, tmp_path, capsys):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    saved = json.loads(config.read_text())
    assert saved.pop('training_size') is None
    config.write_text(json.dumps(saved))
    lines = output.read_text().splitlines(keepends=True)
    output.write_text(''.join(lines[:-3]))  # three rows to train again
    experiment.main([*RUN, '--population', '3', '--output', str(output)])
    assert same_rows(output, uninterrupted[3])
    experiment.main(['--report', str(output)])
    assert 'training_size' not in json.loads(config.read_text())  # the configuration is kept as it was saved
    stderr = refused(experiment.main, [*RUN, '--training-size', '500', '--output', str(output)], capsys)
    assert 'training_size None (now 500)' in stderr


def test_a_results_file_of_the_format_before_the_authors_gaussian_process_is_refused(uninterrupted, tmp_path,
                                                                                     capsys):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    saved = json.loads(config.read_text())
    assert saved.pop('results_format') == 3
    config.write_text(json.dumps(saved))  # as a run before format 2 saved it
    before = snapshot(tmp_path)
    for arguments in ([*RUN, '--output', str(output)], ['--report', str(output)]):
        stderr = refused(experiment.main, arguments, capsys)
        assert f'{output} is in results format 1, this code reads formats 2 and 3' in stderr and '--fresh' in stderr
    assert snapshot(tmp_path) == before


def test_a_results_file_without_its_configuration_is_refused(uninterrupted, tmp_path, capsys):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    config.unlink()
    before = snapshot(tmp_path)
    assert 'exists without its configuration' in refused(experiment.main, [*RUN, '--output', str(output)], capsys)
    assert snapshot(tmp_path) == before


def test_a_recorded_point_the_search_does_not_ask_for_stops_the_resume_and_nothing_is_written(uninterrupted,
                                                                                           tmp_path, capsys):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    lines = output.read_text().splitlines(keepends=True)
    fields = lines[5].split(',')  # Bayesian repetition 1, iteration 3: proposed from the two init points' scores
    assert fields[:3] == ['bayesian', '1', '3']
    fields[results.COLUMNS.index('learning_rate')] = '0.05'
    output.write_text(''.join(lines[:5] + [','.join(fields)] + lines[6:9]) + lines[9][:20])  # and a cut last row
    config.write_text(json.dumps({**json.loads(config.read_text()), 'devices': ['another device']}))
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit:
        experiment.main([*RUN, '--population', '3', '--output', str(output)])
    stderr = capsys.readouterr().err
    assert exit.value.code == 1 and stderr.count('\n') == 1
    assert 'records bayesian repetition 1 iteration 3 at learning rate 0.05' in stderr and '--fresh' in stderr
    assert ('the two differ outright: the file comes from another version of the code or a library, or was edited'
            in stderr)
    assert snapshot(tmp_path) == before  # neither the cut row dropped nor this device added


def test_a_recorded_point_that_differs_in_its_last_digits_is_put_down_to_the_machine_that_wrote_it(
        uninterrupted, tmp_path, capsys):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    saved = json.loads(config.read_text())
    assert saved['machines'] == [results.machine()]
    lines = output.read_text().splitlines(keepends=True)
    fields = lines[5].split(',')  # Bayesian repetition 1, iteration 3: the model's first proposal
    learning_rate = float(fields[results.COLUMNS.index('learning_rate')])
    fields[results.COLUMNS.index('learning_rate')] = repr(learning_rate * (1 + 3e-8))  # as on another CPU
    output.write_text(''.join(lines[:5] + [','.join(fields)] + lines[6:]))
    config.write_text(json.dumps({**saved, 'machines': ['Another CPU (avx2 fma); BLAS openblas 0.3.30 Haswell']}))
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit:
        experiment.main([*RUN, '--population', '3', '--output', str(output)])
    stderr = capsys.readouterr().err
    assert exit.value.code == 1 and stderr.count('\n') == 1
    assert (f'the two differ only in their last digits, as when another CPU or BLAS core computes the model fits: '
            f'the file was written on Another CPU (avx2 fma); BLAS openblas 0.3.30 Haswell, this is '
            f'{results.machine()} (resume it there); --fresh starts over') in stderr
    assert snapshot(tmp_path) == before


def test_the_machine_names_the_cpu_its_vector_instructions_and_the_blas_cores_threadpoolctl_reports():
    import threadpoolctl
    described = results.machine()
    cores = [library for library in threadpoolctl.threadpool_info() if library['user_api'] == 'blas']
    assert cores and all(f'{core["internal_api"]} {core["version"]}' in described for core in cores)
    assert all(core['architecture'] in described for core in cores if core.get('architecture'))
    with open('/proc/cpuinfo') as cpuinfo:
        model = next(line.split(':', 1)[1].strip() for line in cpuinfo if line.startswith('model name'))
    assert described.startswith(model) and ('avx' in described) == ('avx' in open('/proc/cpuinfo').read())


def test_fresh_moves_the_old_files_aside_and_starts_over(uninterrupted, tmp_path, capsys):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    before = output.read_bytes(), config.read_bytes()
    experiment.main([*RUN, '--epochs', '2', '--method', 'sobol', '--repetitions', '1', '--output', str(output),
                     '--fresh'])
    assert ((tmp_path / 'results.old1.csv').read_bytes(),
            (tmp_path / 'results.old1.config.json').read_bytes()) == before
    assert len(read_rows(output)) == 4 and json.loads(config.read_text())['epochs'] == 2
    experiment.main([*RUN, '--epochs', '2', '--method', 'sobol', '--repetitions', '1', '--output', str(output),
                     '--fresh'])
    run_files = ['.csv', '.config.json', '.summary.json', '.summary.md', '.convergence.png',
                 '.convergence-model-epochs.png', '.points.png', '.sobol-vs-random.png']  # the copied run: 2
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ['results.old1.csv', 'results.old1.config.json'] + [f'results{old}{suffix}' for old in ('', '.old2')
                                                            for suffix in run_files])
    assert f'moved {output} aside to {tmp_path / "results.old2.csv"}' in capsys.readouterr().out


def test_move_aside_picks_the_first_number_free_for_every_file(tmp_path):
    for name in ('results.csv', 'results.config.json', 'results.points.png', 'results.old1.points.png'):
        (tmp_path / name).write_text(name)
    moves = results.move_aside(str(tmp_path / 'results.csv'))
    assert [(old[len(str(tmp_path)) + 1:], new[len(str(tmp_path)) + 1:]) for old, new in moves] == [
        ('results.csv', 'results.old2.csv'), ('results.config.json', 'results.old2.config.json'),
        ('results.points.png', 'results.old2.points.png')]
    assert sorted(path.name for path in tmp_path.iterdir()) == ['results.old1.points.png', 'results.old2.config.json',
                                                               'results.old2.csv', 'results.old2.points.png']


def test_an_output_folder_that_cannot_be_written_fails_before_training(count_trained, capsys):
    with folder_without_permissions() as folder:
        stderr = refused(experiment.main, [*RUN, '--output', f'{folder}/results.csv'], capsys)
    assert f'cannot write in its folder {folder} (Permission denied)' in stderr and count_trained == []


@pytest.mark.parametrize('prepare, named', [
    (lambda output: output.parent.rmdir(), 'does not exist'),
    (lambda output: output.mkdir(), 'is a folder or cannot be written'),
    (lambda output: config_path(output).write_text('{"epochs": 1'), 'cannot be read as a configuration'),
    (lambda output: config_path(output).write_text('[1, 2]'), 'cannot be read as a configuration'),
], ids=['missing folder', 'output is a folder', 'cut configuration', 'configuration not an object'])
def test_an_output_that_cannot_be_used_fails_before_training_or_writing(tmp_path, count_trained, capsys, prepare,
                                                                        named):
    output = tmp_path / 'run' / 'results.csv'
    output.parent.mkdir()
    prepare(output)
    before = snapshot(tmp_path)
    assert named in refused(experiment.main, [*RUN, '--output', str(output)], capsys)
    assert count_trained == [] and snapshot(tmp_path) == before



# One writer per results file, and hostile paths, names and configurations

def start(arguments, cwd):
    """test.py started as a user starts it, its output captured."""
    return subprocess.Popen([sys.executable, str(ROOT / 'test.py'), *arguments], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_second_run_on_a_file_another_run_holds_is_refused_at_once_and_changes_nothing(uninterrupted, tmp_path):
    arguments = [*RUN, '--population', '3', '--output', 'results.csv']
    first = start(arguments, tmp_path)
    while rows_in(tmp_path / 'results.csv') < 2:
        assert first.poll() is None, first.communicate()
        time.sleep(0.005)
    first.send_signal(signal.SIGSTOP)  # holding the lock, writing nothing
    try:
        before = snapshot(tmp_path)
        second = subprocess.run([sys.executable, str(ROOT / 'test.py'), *arguments], cwd=tmp_path,
                                capture_output=True, text=True, timeout=600)
        assert snapshot(tmp_path) == before
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and second.stdout == ''
    assert second.stderr == (f'test.py: error: results.csv is being written by another run (process {first.pid}): '
                             'wait for it to end, or name another --output\n')
    assert first.wait(timeout=600) == 0
    assert same_rows(tmp_path / 'results.csv', uninterrupted[3]) and not (tmp_path / 'results.lock').exists()


def test_of_two_runs_started_together_one_writes_and_the_other_is_refused(uninterrupted, tmp_path):
    arguments = [*RUN, '--population', '1', '--output', 'results.csv']  # one network at a time: the longer run
    runs = [start(arguments, tmp_path) for _ in range(2)]
    outcomes = sorted((run.wait(timeout=600), run.communicate()[1]) for run in runs)
    assert [status for status, _ in outcomes] == [0, 2]
    assert outcomes[1][1].startswith('test.py: error: results.csv is being written by another run (process ')
    assert same_rows(tmp_path / 'results.csv', uninterrupted[1])


def test_a_killed_run_leaves_a_lock_file_that_blocks_nothing(uninterrupted, tmp_path):
    start_and_stop(tmp_path / 'results.csv', 3, signal.SIGKILL, [*RUN, '--population', '3'])
    assert (tmp_path / 'results.lock').exists()  # the operating system's lock died with the process
    experiment.main([*RUN, '--population', '3', '--output', str(tmp_path / 'results.csv')])
    assert same_rows(tmp_path / 'results.csv', uninterrupted[3]) and not (tmp_path / 'results.lock').exists()


def dangling_link(folder):
    (folder / 'dangling.csv').symlink_to(folder / 'missing' / 'target.csv')
    return 'dangling.csv'


BAD_OUTPUTS = [
    (lambda folder: '', "'' is not a results file name: it must end in .csv"),
    (lambda folder: 'newdir/', "'newdir/' is not a results file name"),
    (lambda folder: 'results.txt', "'results.txt' is not a results file name"),
    (lambda folder: '.csv', "'.csv' is not a results file name"),
    (lambda folder: f'../{folder.name}/missing/../results.csv', 'missing/.. does not exist'),
    (dangling_link, 'dangling.csv is a symbolic link to nothing'),
    (lambda folder: 'r' * 245 + '.csv', 'the name is too long for the files beside it, such as rrr'),
]


@pytest.mark.parametrize('fresh', [[], ['--fresh']], ids=['', 'fresh'])
@pytest.mark.parametrize('output, named', BAD_OUTPUTS, ids=[named[:24] for _, named in BAD_OUTPUTS])
def test_a_bad_output_name_is_refused_in_one_line_before_the_data_loads(output, named, fresh, uninterrupted, tmp_path,
                                                                       monkeypatch, capsys):
    copy_of_finished_run(uninterrupted, tmp_path)  # a run whose files a bad name must not touch
    monkeypatch.chdir(tmp_path)
    name = output(tmp_path)
    monkeypatch.setattr(experiment.command_line, 'load_data', lambda *args: pytest.fail('the data was loaded'))
    before = snapshot(tmp_path)
    assert named in refused(experiment.main, [*RUN, *fresh, '--output', name], capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('method', ['sobol', 'random'])
def test_a_recorded_planned_point_the_search_does_not_ask_for_is_refused_before_the_data_loads(method, tmp_path,
                                                                                             monkeypatch, capsys):
    run = [*RUN, '--method', f'bayesian,{method}', '--population', '3', '--output', str(tmp_path / 'results.csv')]
    with monkeypatch.context() as patch:
        patch.setattr(network, 'train_and_evaluate_population', pretend_population)
        experiment.main(run)
    output = tmp_path / 'results.csv'
    lines = output.read_text().splitlines(keepends=True)
    last = next(index for index, line in enumerate(lines) if line.startswith(f'{method},1,4,'))
    fields = lines[last].split(',')  # the last row of the file, changed
    fields[results.COLUMNS.index('learning_rate')] = '0.05'
    output.write_text(''.join(lines[:last] + [','.join(fields)]))
    monkeypatch.setattr(experiment.command_line, 'load_data', lambda *args: pytest.fail('the data was loaded'))
    before = snapshot(tmp_path)
    for arguments in (run, ['--report', str(output)]):
        stderr = refused(experiment.main, arguments, capsys)
        assert (f'results.csv line {last + 1} ({method} repetition 1 iteration 4): learning_rate is 0.05, where the '
                'plan makes it 0.') in stderr
    assert snapshot(tmp_path) == before


def fifo(path):
    os.mkfifo(path)


@pytest.mark.parametrize('name, make', [('results.lock', os.mkdir), ('results.config.json', fifo),
                                        ('results.summary.json', os.mkdir), ('results.lock', fifo)])
@pytest.mark.parametrize('report', [False, True], ids=['run', 'report'])
def test_a_file_of_the_run_that_is_not_a_file_is_refused_in_one_line(name, make, report, tmp_path, monkeypatch,
                                                                     capsys):
    make(tmp_path / name)
    monkeypatch.setattr(experiment.command_line, 'load_data', lambda *args: pytest.fail('the data was loaded'))
    before = snapshot(tmp_path)
    output = str(tmp_path / 'results.csv')
    arguments = ['--report', output] if report else [*RUN, '--output', output]
    assert f'{tmp_path / name} is in the way of the run in' in refused(experiment.main, arguments, capsys)
    assert snapshot(tmp_path) == before


def test_a_link_to_the_results_file_shares_its_lock(uninterrupted, tmp_path):
    output, _ = copy_of_finished_run(uninterrupted, tmp_path)
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'link.csv').symlink_to(output)
    (tmp_path / 'other' / 'link.config.json').symlink_to(config_path(output))
    lock = results.RunLock(str(output))
    try:
        with pytest.raises(results.ResultsFileError, match='is being written by another run'):
            results.RunLock(str(tmp_path / 'other' / 'link.csv'))
    finally:
        lock.release()
    assert sorted(os.listdir(tmp_path / 'other')) == ['link.config.json', 'link.csv']  # no lock file beside the link


@pytest.mark.parametrize('change, named', [
    ({'devices': 5}, 'its devices 5 are not a list of device names'),
    ({'devices': 'x'}, "its devices 'x' are not a list of device names"),
    ({'versions': ['torch']}, "its versions ['torch'] are not package names with version texts"),
])
def test_a_configuration_of_the_wrong_types_is_refused_in_one_line(change, named, uninterrupted, tmp_path, capsys):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    config.write_text(json.dumps({**json.loads(config.read_text()), **change}))
    before = snapshot(tmp_path)
    assert named in refused(experiment.main, [*RUN, '--population', '3', '--output', str(output)], capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('change, named', [
    ({'evaluations': None}, 'its configuration has no evaluations'),
    ({'method': None, 'seed': None}, 'its configuration has no method, seed'),
    ({'evaluations': [4]}, 'its configuration holds evaluations [4], where a run writes an integer'),
    ({'evaluations': 0}, '--evaluations 0 must be a positive integer'),
    ({'method': ['sobol', 'lattice']}, "invalid method 'lattice'"),
    ({'devices': 5}, 'its devices 5 are not a list of device names'),
])
def test_report_refuses_a_configuration_that_the_flags_would_refuse(change, named, uninterrupted, tmp_path, capsys):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    saved = {name: value for name, value in {**json.loads(config.read_text()), **change}.items() if value is not None}
    config.write_text(json.dumps(saved))
    before = snapshot(tmp_path)
    assert named in refused(experiment.main, ['--report', str(output)], capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('change, named', [
    ({'evaluations': 4.0}, 'its configuration holds evaluations 4.0, where a run writes an integer'),
    ({'seed': 0.0}, 'its configuration holds seed 0.0, where a run writes an integer'),
    ({'epochs': '1'}, "its configuration holds epochs '1', where a run writes an integer"),
    ({'repetitions': True}, 'its configuration holds repetitions True, where a run writes an integer'),
    ({'results_format': '3'}, "is in results format '3', this code reads formats 2 and 3"),
])
def test_resume_and_report_refuse_the_same_configurations(change, named, uninterrupted, tmp_path, capsys):
    output, config = copy_of_finished_run(uninterrupted, tmp_path)
    config.write_text(json.dumps({**json.loads(config.read_text()), **change}))
    before = snapshot(tmp_path)
    for arguments in ([*RUN, '--population', '3', '--output', str(output)], ['--report', str(output)]):
        assert named in refused(experiment.main, arguments, capsys), arguments
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('line', [2, 5, 11])
def test_a_row_missing_in_the_middle_is_refused_by_resume_and_report_naming_it(line, uninterrupted, tmp_path, capsys):
    output, _ = copy_of_finished_run(uninterrupted, tmp_path)
    lines = output.read_text().splitlines(keepends=True)
    method, repetition, iteration = lines[line - 1].split(',')[:3]
    output.write_text(''.join(lines[:line - 1] + lines[line:]))
    before = snapshot(tmp_path)
    for arguments in ([*RUN, '--population', '3', '--output', str(output)], ['--report', str(output)]):
        assert f'{method} repetition {repetition} iteration {iteration} is missing' in refused(experiment.main,
                                                                                                arguments, capsys)
    assert snapshot(tmp_path) == before


NAME_PARTS = st.sampled_from(['results', 'sub', 'missing', '.', '..', '', ' ', 'a\nb', '-x', 'é', 'r' * 250])


@st.composite
def output_names(draw):
    """Output names as a hostile user types them: folders that exist or not, dots, spaces, newlines, long names
    (relative ones: at most three levels up)."""
    name = '/'.join(draw(st.lists(NAME_PARTS, max_size=3))) + draw(st.sampled_from(['.csv', '', '.txt', '/', '.csv/']))
    return name.lstrip('/')


def json_values():
    return st.recursive(st.none() | st.booleans() | st.integers(-5, 10 ** 20) | st.text(max_size=4)
                        | st.floats(allow_nan=False, allow_infinity=False),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                    max_size=2), max_leaves=4)


SMALL_RUN = small_run(method='random,bayesian', evaluations=2, init_points=1, repetitions=1, epochs=None)


def run_or_refusal(arguments, folder, watched=None):
    """test.py's main run in `folder` with pretend training and no plots: its exit status (0 when it returns),
    having checked that a refusal is one line and leaves the `watched` folder (`folder`) as it was; and that
    line."""
    watched = watched or folder
    before = snapshot(watched)
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(network, 'train_and_evaluate_population', pretend_population)
        patch.setattr(report, 'report_results', lambda *args: None)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                experiment.main(arguments)
        except SystemExit as exit:
            assert exit.code == 2 and stderr.getvalue().count('\n') == 1 and ': error: ' in stderr.getvalue()
            assert snapshot(watched) == before
            return 2, stderr.getvalue()
    return 0, ''


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(name=output_names())
def test_any_output_name_runs_or_is_refused_in_one_line_leaving_the_folder_as_it_was(name):
    with tempfile.TemporaryDirectory() as top:
        folder = Path(top) / 'a' / 'b' / 'c'  # where the run starts: '..' three times stays inside `top`
        (folder / 'sub').mkdir(parents=True)
        if run_or_refusal([*SMALL_RUN, '--output', name], folder, top)[0] == 0:
            event('ran')
            assert len(read_rows(folder / name)) == 4
        else:
            event('refused')


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(changes=st.dictionaries(st.sampled_from([*run_settings.SAVED_KINDS, 'devices', 'versions',
                                                 'results_format']), st.none() | json_values(), max_size=2))
def test_any_configuration_content_resumes_reports_or_is_refused_in_one_line(changes):
    with tempfile.TemporaryDirectory() as folder:
        assert run_or_refusal([*SMALL_RUN, '--output', 'results.csv'], folder)[0] == 0
        config = Path(folder) / 'results.config.json'
        saved = json.loads(config.read_text())
        config.write_text(json.dumps({name: value for name, value in {**saved, **changes}.items()
                                      if changes.get(name, 0) is not None}))  # None: the setting deleted
        (resumed, why), (reported, _) = (run_or_refusal(arguments, folder) for arguments in
                                         ([*SMALL_RUN, '--output', 'results.csv'], ['--report', 'results.csv']))
        event(f'resume {"ran" if resumed == 0 else "refused"}, report {"ran" if reported == 0 else "refused"}')
        # the same configurations are readable both ways; a readable one that is not the command's is not resumed
        assert resumed == reported or (reported == 0 and 'was made with another configuration' in why), why
