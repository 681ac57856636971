"""Nothing lost: resuming a results file, crash-safe writes, refused files and failing before training."""
import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import ROOT

import test as experiment

RUN = ['--dataset', 'digits', '--epochs', '1', '--evaluations', '4', '--init-points', '2', '--repetitions', '2',
       '--method', 'both', '--device', 'cpu']  # 16 evaluations; results are reproducible on CPU


def without_seconds(path):
    """The CSV's rows without the wall-time column, the one thing a rerun changes."""
    with open(path, newline='') as file:
        return [row[:-1] for row in csv.reader(file)]


def config_path(output):
    return output.parent / (output.stem + '.config.json')


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """{population: results file} of runs that were never stopped."""
    folder = tmp_path_factory.mktemp('uninterrupted')
    outputs = {}
    for population in (1, 3):
        outputs[population] = folder / f'population-{population}.csv'
        experiment.main([*RUN, '--population', str(population), '--output', str(outputs[population])])
    return outputs


def count_trained(monkeypatch):
    """A list that grows by one for every network trained from now on."""
    trained = []
    train_networks = experiment.train_networks
    monkeypatch.setattr(experiment, 'train_networks',
                        lambda rows, *rest, **options: trained.extend(rows) or train_networks(rows, *rest, **options))
    return trained


# (whole lines kept, characters of the next line kept): the run stopped there, possibly while writing a row
CUTS = {3: [(0, 10), (1, 0), (6, 50), (9, 0), (13, 7), (17, 0)], 1: [(4, 30), (11, 0)]}


@pytest.mark.parametrize('population, lines, characters',
                         [(population, *cut) for population, cuts in CUTS.items() for cut in cuts])
def test_a_stopped_run_resumes_to_the_file_of_an_uninterrupted_run(uninterrupted, population, lines, characters,
                                                                   tmp_path, monkeypatch, capsys):
    full = uninterrupted[population].read_text().splitlines(keepends=True)
    output = tmp_path / 'results.csv'
    output.write_text(''.join(full[:lines]) + full[lines][:characters] if lines < len(full) else ''.join(full))
    shutil.copy(config_path(uninterrupted[population]), config_path(output))
    trained = count_trained(monkeypatch)
    experiment.main([*RUN, '--population', str(population), '--output', str(output)])
    assert without_seconds(output) == without_seconds(uninterrupted[population])
    assert output.read_text().splitlines(keepends=True)[:lines] == full[:lines]  # recorded rows stay as they were
    missing = len(full) - max(lines, 1)
    # finished evaluations are read, not retrained; a population the file holds in part is retrained whole
    assert missing <= len(trained) <= missing + population - 1 and (missing > 0 or trained == [])
    if lines > 1:
        assert f'{lines - 1} of 16 evaluations are recorded' in capsys.readouterr().out


def rows_in(path):
    return max(path.read_bytes().count(b'\n') - 1, 0) if path.exists() else 0


def start_and_stop(output, rows, stop_signal):
    """Run test.py until it has written a row and `output` holds at least `rows` rows, then send `stop_signal`;
    return its stderr."""
    rows = max(rows, rows_in(output) + 1)
    process = subprocess.Popen([sys.executable, str(ROOT / 'test.py'), *RUN, '--population', '3',
                                '--output', output.name], cwd=output.parent, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    while process.poll() is None and rows_in(output) < rows:
        time.sleep(0.005)
    assert process.poll() is None, 'the run ended before it could be stopped'
    process.send_signal(stop_signal)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == (-signal.SIGKILL if stop_signal == signal.SIGKILL else 130), stderr
    return stderr


def test_killed_at_any_point_and_resumed_each_time_the_file_is_that_of_an_uninterrupted_run(uninterrupted,
                                                                                          tmp_path):
    output = tmp_path / 'results.csv'
    for rows, stop_signal in [(1, signal.SIGKILL), (5, signal.SIGKILL), (8, signal.SIGINT), (11, signal.SIGKILL)]:
        stderr = start_and_stop(output, rows, stop_signal)
        assert rows <= rows_in(output) < 16
        if stop_signal == signal.SIGINT:  # Ctrl-C
            assert stderr.count('\n') == 1 and stderr.startswith('test.py: interrupted: ')
            assert stderr.endswith(f' of 16 evaluations are saved in {output.name}; run the same command again to '
                                   'resume\n')
    result = subprocess.run([sys.executable, str(ROOT / 'test.py'), *RUN, '--population', '3',
                             '--output', output.name], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert without_seconds(output) == without_seconds(uninterrupted[3])


def finished_run(uninterrupted, folder):
    """A copy of the finished population-3 run in `folder`: (its CSV, its configuration JSON)."""
    output = folder / 'results.csv'
    shutil.copy(uninterrupted[3], output)
    shutil.copy(config_path(uninterrupted[3]), config_path(output))
    return output, config_path(output)


def refused(arguments, capsys):
    """Run test.py's main expecting a one-line error and exit status 2; return that line."""
    with pytest.raises(SystemExit) as exit:
        experiment.main(arguments)
    stderr = capsys.readouterr().err
    assert exit.value.code == 2 and stderr.count('\n') == 1 and ': error: ' in stderr, stderr
    return stderr


def garbage(lines):
    """The uninterrupted file's lines with row 3 (line 4) replaced by garbage."""
    return ''.join(lines[:3] + ['bayesian,1,1,,not-a-seed,0.01,0,1,0.5,1,0.5,0.1\n'] + lines[4:])


def swap_seeds(lines):
    """Two rows exchanged whole except for their seeds: every field is a valid number."""
    first, second = lines[1].split(','), lines[2].split(',')
    first[4], second[4] = second[4], first[4]
    return ''.join(lines[:1] + [','.join(first), ','.join(second)] + lines[3:])


MALFORMED = [
    (garbage, "line 4: seed 'not-a-seed' is not a number"),
    (swap_seeds, 'line 2: seed'),
    (lambda lines: ''.join(lines + lines[5:6]), 'is recorded twice'),
    (lambda lines: ''.join(['Method,Repetition\n'] + lines[1:]), 'line 1: the header is not'),
    (lambda lines: ''.join(lines[:6] + ['\n'] + lines[6:]), 'line 7: 0 fields instead of 12'),
    (lambda lines: ''.join(lines[:6]) + 'Note: rerun later', "its last line, 'Note: rerun later'"),
    (lambda lines: 'an unrelated note', "its last line, 'an unrelated note'"),
    (lambda lines: ''.join(lines[:6]).replace('bayesian,2,1', 'random,2,1'), "method 'random' is not one of"),
    (lambda lines: ''.join(lines[:6]).replace(',1,1,', ',1,7,'), 'line 2: iteration 7 is outside 1..4'),
    (lambda lines: ''.join(lines[:6]).replace('bayesian,1,1,,', 'bayesian,1,1,1,'),
     'line 2: repeat_of 1 is not an earlier iteration of a Bayesian search'),
]


@pytest.mark.parametrize('damage, named', MALFORMED, ids=[named for _, named in MALFORMED])
def test_a_results_file_with_anything_but_a_cut_last_line_wrong_is_refused_and_left_unchanged(
        uninterrupted, tmp_path, capsys, damage, named):
    output, config = finished_run(uninterrupted, tmp_path)
    output.write_text(damage(output.read_text().splitlines(keepends=True)))
    before = output.read_bytes(), config.read_bytes()
    stderr = refused([*RUN, '--population', '3', '--output', str(output)], capsys)
    assert named in stderr and 'the file is left as it is' in stderr
    assert (output.read_bytes(), config.read_bytes()) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ['results.config.json', 'results.csv']


@pytest.mark.parametrize('arguments, named', [
    (['--epochs', '2'], 'epochs 1 (now 2)'),
    (['--learning-rate-bounds', '0.001', '0.1'], 'learning_rate_bounds [0.0001, 0.1] (now [0.001, 0.1])'),
    (['--repetitions', '3', '--seed', '4'], 'repetitions 2 (now 3); seed 0 (now 4)'),
    (['--method', 'sobol'], "method ['bayesian', 'sobol'] (now ['sobol'])"),
])
def test_resuming_with_another_configuration_is_refused_naming_the_differences(uninterrupted, tmp_path, capsys,
                                                                               arguments, named):
    output, config = finished_run(uninterrupted, tmp_path)
    before = output.read_bytes(), config.read_bytes()
    stderr = refused([*RUN, *arguments, '--output', str(output)], capsys)
    assert f'{output} was made with another configuration ({named}' in stderr and '--fresh' in stderr
    assert (output.read_bytes(), config.read_bytes()) == before


def test_another_library_version_is_another_configuration(uninterrupted, tmp_path, capsys):
    output, config = finished_run(uninterrupted, tmp_path)
    saved = json.loads(config.read_text())
    assert saved['versions']['bayesian-optimization'] == '3.4.0' and saved['epochs'] == 1
    saved['versions']['bayesian-optimization'] = '1.4.3'
    config.write_text(json.dumps(saved))
    assert "bayesian-optimization version '1.4.3' (now '3.4.0')" in refused([*RUN, '--output', str(output)], capsys)


def test_a_results_file_of_the_format_before_the_authors_gaussian_process_is_refused(uninterrupted, tmp_path,
                                                                                     capsys):
    output, config = finished_run(uninterrupted, tmp_path)
    saved = json.loads(config.read_text())
    assert saved.pop('results_format') == 2
    config.write_text(json.dumps(saved))  # as a run before format 2 saved it
    before = output.read_bytes(), config.read_bytes()
    for arguments in ([*RUN, '--output', str(output)], ['--report', str(output)]):
        stderr = refused(arguments, capsys)
        assert f'{output} is in results format 1, this code reads format 2' in stderr and '--fresh' in stderr
    assert (output.read_bytes(), config.read_bytes()) == before


def test_a_results_file_without_its_configuration_is_refused(uninterrupted, tmp_path, capsys):
    output, config = finished_run(uninterrupted, tmp_path)
    config.unlink()
    before = output.read_bytes()
    assert 'exists without its configuration' in refused([*RUN, '--output', str(output)], capsys)
    assert output.read_bytes() == before and not config.exists()


def test_a_recorded_point_the_search_does_not_ask_for_stops_the_resume(uninterrupted, tmp_path, capsys):
    output, _ = finished_run(uninterrupted, tmp_path)
    lines = output.read_text().splitlines(keepends=True)
    fields = lines[5].split(',')  # Bayesian repetition 1, iteration 3: proposed from the two init points' scores
    assert fields[:3] == ['bayesian', '1', '3']
    fields[5] = '0.05'
    output.write_text(''.join(lines[:5] + [','.join(fields)] + lines[6:]))
    with pytest.raises(SystemExit) as exit:
        experiment.main([*RUN, '--population', '3', '--output', str(output)])
    stderr = capsys.readouterr().err
    assert exit.value.code == 1 and stderr.count('\n') == 1
    assert 'records bayesian repetition 1 iteration 3 at learning rate 0.05' in stderr and '--fresh' in stderr


def test_fresh_moves_the_old_files_aside_and_starts_over(uninterrupted, tmp_path, capsys):
    output, config = finished_run(uninterrupted, tmp_path)
    before = output.read_bytes(), config.read_bytes()
    experiment.main([*RUN, '--epochs', '2', '--method', 'sobol', '--repetitions', '1', '--output', str(output),
                     '--fresh'])
    assert ((tmp_path / 'results.old1.csv').read_bytes(),
            (tmp_path / 'results.old1.config.json').read_bytes()) == before
    assert len(without_seconds(output)) == 5 and json.loads(config.read_text())['epochs'] == 2
    experiment.main([*RUN, '--epochs', '2', '--method', 'sobol', '--repetitions', '1', '--output', str(output),
                     '--fresh'])
    run_files = ['.csv', '.config.json', '.summary.json', '.summary.md', '.convergence.png', '.points.png',
                 '.sobol-vs-random.png']  # the copied run had only the first two
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ['results.old1.csv', 'results.old1.config.json'] + [f'results{old}{suffix}' for old in ('', '.old2')
                                                            for suffix in run_files])
    assert 'moved' in capsys.readouterr().out


@contextlib.contextmanager
def folder_without_permissions():
    """A new folder this process may neither write nor read. Root ignores permission bits, so a root process
    takes the nobody user's identity (its effective user id) until the block ends."""
    folder = tempfile.mkdtemp()
    os.chmod(folder, 0o111)  # traversable, not readable, not writable
    was_root = os.geteuid() == 0
    try:
        if was_root:
            os.seteuid(65534)
        yield folder
    finally:
        if was_root:
            os.seteuid(0)
        os.chmod(folder, 0o700)
        shutil.rmtree(folder)


def test_an_output_folder_that_cannot_be_written_fails_before_training(monkeypatch, capsys):
    trained = count_trained(monkeypatch)
    with folder_without_permissions() as folder:
        stderr = refused([*RUN, '--output', f'{folder}/results.csv'], capsys)
    assert f'cannot write in its folder {folder} (Permission denied)' in stderr and trained == []


def snapshot(folder):
    """Every path under `folder` with its bytes (None for a folder)."""
    return {path: None if path.is_dir() else path.read_bytes() for path in folder.rglob('*')}


@pytest.mark.parametrize('prepare, named', [
    (lambda output: output.parent.rmdir(), 'does not exist'),
    (lambda output: output.mkdir(), 'is a folder or cannot be written'),
    (lambda output: config_path(output).write_text('{"epochs": 1'), 'cannot be read as a configuration'),
    (lambda output: config_path(output).write_text('[1, 2]'), 'cannot be read as a configuration'),
], ids=['missing folder', 'output is a folder', 'cut configuration', 'configuration not an object'])
def test_an_output_that_cannot_be_used_fails_before_training_or_writing(tmp_path, monkeypatch, capsys, prepare,
                                                                        named):
    output = tmp_path / 'run' / 'results.csv'
    output.parent.mkdir()
    prepare(output)
    before = snapshot(tmp_path)
    trained = count_trained(monkeypatch)
    assert named in refused([*RUN, '--output', str(output)], capsys)
    assert trained == [] and snapshot(tmp_path) == before


def test_a_data_folder_that_cannot_be_read_fails_before_training(capsys):
    with folder_without_permissions() as folder:
        stderr = refused(['--dataset', 'mnist', '--data-dir', folder, '--output', f'{tempfile.gettempdir()}/x.csv'],
                         capsys)
    assert f'--data-dir {folder} cannot be read (Permission denied)' in stderr
