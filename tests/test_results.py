"""The results file (results.py), and nothing lost: a stopped run resumes to the file of an uninterrupted one,
whatever its population; a file that is not what the run would write is refused and left as it was."""
import contextlib
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest
from conftest import (ROOT, folder_without_permissions, pretend_population, read_rows, refused, rows_in, snapshot,
                      sorted_rows, start_and_stop, without_seconds)
from hypothesis import event, given, settings
from hypothesis import strategies as st

import files
import network
import report
import results
import run_settings
import search_states
import searches
import test as experiment

RUN = ['--dataset', 'digits', '--epochs', '1', '--evaluations', '4', '--init-points', '2', '--repetitions', '2',
       '--method', 'both', '--device', 'cpu']  # 16 evaluations; results are reproducible on CPU


def config_path(output):
    return Path(files.configuration_path(str(output)))


def same_rows(first, second):
    """Whether two results files hold the same rows, in the same order, but for their wall times."""
    return without_seconds(read_rows(first)) == without_seconds(read_rows(second))


def flags(population):
    """The flags of a population size, or of 'rounds': populations of 3 with --schedule rounds."""
    return ['--population', '3', '--schedule', 'rounds'] if population == 'rounds' else ['--population',
                                                                                        str(population)]


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """{population: results file} of runs that were never stopped (10: the CPU default)."""
    folder = tmp_path_factory.mktemp('uninterrupted')
    outputs = {}
    for population in (1, 3, 10, 'rounds'):
        outputs[population] = folder / f'population-{population}.csv'
        experiment.main([*RUN, *flags(population), '--output', str(outputs[population])])
    return outputs


# The sizes of the populations the 16 rows of RUN are written in, in file order: with 3, the two Bayesian
# repetitions in lockstep (2 per iteration), then the 8 Sobol points in threes; with rounds, each of the 4 rounds
# trains the two Bayesian repetitions' points and 2 of the Sobol points, as populations of 3 and 1
POPULATION_SIZES = {1: [1] * 16, 3: [2, 2, 2, 2, 3, 3, 2], 'rounds': [3, 1] * 4}
# (whole lines kept, characters of the next line kept): the run stopped there, possibly while writing a row
CUTS = {3: [(0, 10), (1, 0), (4, 20), (6, 50), (9, 0), (11, 30), (13, 7), (17, 0)], 1: [(4, 30), (11, 0)],
        'rounds': [(3, 5), (4, 0), (15, 20)]}


def retrained(full_rows, population, rows_kept):
    """The networks a resume must train: every new point of each population that the file does not hold whole
    (a repeated Bayesian point is answered from its earlier row, never trained)."""
    count, start = 0, 0
    for size in POPULATION_SIZES[population]:
        members = full_rows[start:start + size]
        if start + size > rows_kept and any(row['repeat_of'] == ''
                                            for row in members[max(rows_kept - start, 0):]):
            count += sum(row['repeat_of'] == '' for row in members)
        start += size
    return count


@pytest.mark.parametrize('population, lines, characters',
                         [(population, *cut) for population, cuts in CUTS.items() for cut in cuts])
def test_a_stopped_run_resumes_to_the_file_of_an_uninterrupted_run(uninterrupted, population, lines, characters,
                                                                   tmp_path, count_trained, capsys):
    full = uninterrupted[population].read_text().splitlines(keepends=True)
    output = tmp_path / 'results.csv'
    output.write_text(''.join(full[:lines]) + full[lines][:characters] if lines < len(full) else ''.join(full))
    shutil.copy(config_path(uninterrupted[population]), config_path(output))
    experiment.main([*RUN, *flags(population), '--output', str(output)])
    assert same_rows(output, uninterrupted[population])
    assert output.read_text().splitlines(keepends=True)[:lines] == full[:lines]  # recorded rows stay as they were
    # finished evaluations are read, not retrained; a population the file holds in part is retrained whole
    assert len(count_trained) == retrained(read_rows(uninterrupted[population]), population, max(lines - 1, 0))
    if lines > 1:
        assert f'{lines - 1} of 16 evaluations are recorded' in capsys.readouterr().out


def test_the_retrained_count_is_worked_out_from_the_populations():
    rows = [{'repeat_of': ''}] * 16
    assert [retrained(rows, 3, kept) for kept in (0, 1, 2, 3, 8, 9, 11, 14, 15, 16)] == [16, 16, 14, 14, 8, 8, 5, 2,
                                                                                         2, 0]
    rows = [{'repeat_of': ''}] * 8 + [{'repeat_of': '1'}] * 8
    assert [retrained(rows, 3, kept) for kept in (7, 8, 9)] == [2, 0, 0]  # repeats are never trained
    rows = [{'repeat_of': ''}] * 9 + [{'repeat_of': '1'}] * 2 + [{'repeat_of': ''}] * 5
    assert [retrained(rows, 3, kept) for kept in (8, 9)] == [6, 5]  # a population's new point, then its repeats
    rows = [{'repeat_of': ''}] * 16
    assert [retrained(rows, 'rounds', kept) for kept in (2, 3, 4, 14, 15)] == [16, 13, 12, 4, 1]


@pytest.mark.parametrize('before, after', [(3, 1), (3, 2), (1, 3), (1, None), ('rounds', 3), (3, 'rounds')])
@pytest.mark.parametrize('rows_kept', [3, 7, 12])
def test_a_run_resumed_with_another_population_makes_the_same_searches(before, after, rows_kept, pretend_training,
                                                                       tmp_path):
    run = [*RUN, '--method', 'bayesian,sobol,random', '--repetitions', '3']  # lockstep over 3 repetitions
    full = tmp_path / 'full.csv'
    experiment.main([*run, *flags(before), '--output', str(full)])
    lines = full.read_text().splitlines(keepends=True)
    output = tmp_path / 'resumed.csv'
    output.write_text(''.join(lines[:rows_kept + 1]) + lines[rows_kept + 1][:15])
    shutil.copy(config_path(full), config_path(output))
    del pretend_training[:]
    experiment.main([*run, *(flags(after) if after else []), '--output', str(output)])
    assert without_seconds(sorted_rows(output)) == without_seconds(sorted_rows(full))
    assert output.read_text().splitlines(keepends=True)[:rows_kept + 1] == lines[:rows_kept + 1]
    # every evaluation not recorded is trained once; a population holding recorded ones retrains them with it
    assert len(pretend_training) >= 36 - rows_kept and len(set(pretend_training)) == len(pretend_training)


# (rows written, signal): each stop of one run; with 10 (the CPU default) the 8 Sobol points train as one population.
# SIGTERM: kill, SLURM, systemd; SIGHUP: a closed terminal
STOPS = {3: [(1, signal.SIGKILL), (5, signal.SIGTERM), (10, signal.SIGINT)],
         1: [(9, signal.SIGHUP)], 10: [(3, signal.SIGKILL), (8, signal.SIGTERM)]}


@pytest.mark.parametrize('population', [3, 1], ids=['population 3', 'population 1'])
def test_killed_at_any_point_and_resumed_each_time_the_file_is_that_of_an_uninterrupted_run(population, uninterrupted,
                                                                                          tmp_path):
    output = tmp_path / 'results.csv'
    flags = [] if population == 10 else ['--population', str(population)]
    for rows, stop_signal in STOPS[population]:
        stderr = start_and_stop(output, rows, stop_signal, [*RUN, *flags])
        assert rows <= rows_in(output) < 16
        assert (tmp_path / 'results.lock').exists() == (stop_signal == signal.SIGKILL)  # a stop removes it
        if stop_signal != signal.SIGKILL:
            assert stderr.count('\n') == 1 and stderr.startswith('test.py: interrupted: ')
            assert stderr.endswith(f'{rows_in(output)} of 16 evaluations are saved in {output.name}; run the same '
                                   'command again to resume\n')
    result = subprocess.run([sys.executable, str(ROOT / 'test.py'), *RUN, *flags, '--output', output.name],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert same_rows(output, uninterrupted[population])


# Guided searches of every kind (with planned rows shared over the rounds): 6 rounds of 4 x 2 guided searches
SAVED_RUN = ['--dataset', 'digits', '--device', 'cpu', '--epochs', '1', '--evaluations', '5', '--init-points', '2',
             '--repetitions', '2', '--method', 'bayesian,bayesian-library,tpe,gp,sobol', '--population', '3',
             '--schedule', 'rounds', '--quiet']


def unreadable(output):
    output.with_name('results.searches.pickle').write_bytes(b'not a pickle')


def cut_after_round_2(output):  # the file then holds less than the state of round 3 it stopped after
    output.write_text(''.join(output.read_text().splitlines(keepends=True)[:1 + 2 * 10]))


@pytest.fixture(scope='module')
def uninterrupted_saved_run(tmp_path_factory):
    """SAVED_RUN never stopped: its results file."""
    output = tmp_path_factory.mktemp('uninterrupted') / 'results.csv'
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(network, 'train_and_evaluate_population', pretend_population)
        experiment.main([*SAVED_RUN, '--output', str(output)])
    assert not output.with_name('results.searches.pickle').exists()  # removed once the searches end
    return output


@pytest.mark.parametrize('damage, asks_saved', [(None, 3 * 8), (unreadable, 0), (cut_after_round_2, 0)],
                         ids=['saved', 'an unreadable state', 'a file cut back before it'])
def test_a_resume_continues_the_searches_from_their_saved_state_and_replays_them_without_it(
        damage, asks_saved, uninterrupted_saved_run, pretend_training, tmp_path, monkeypatch):
    """Stopped just after round 3's state is saved: the resume asks the guided searches only for their later points
    (8 x 6 asks uninterrupted), and writes the file of an uninterrupted run; a state it cannot use is replayed, to
    the same file."""
    asked = []
    for search_class in (searches.BayesOptSearch, searches.OptunaSearch):
        monkeypatch.setattr(search_class, 'ask', lambda search, ask=search_class.ask: asked.append(1) or ask(search))
    save, saves = search_states.save, []

    def stopping_save(output, rounds):
        save(output, rounds)
        saves.append(rounds.done)
        if rounds.done == 3:
            raise KeyboardInterrupt
    monkeypatch.setattr(search_states, 'save', stopping_save)
    output = tmp_path / 'results.csv'
    with pytest.raises(SystemExit):
        experiment.main([*SAVED_RUN, '--output', str(output)])
    assert saves == [1, 2, 3] and rows_in(output) == 3 * 10
    if damage:
        damage(output)
    monkeypatch.setattr(search_states, 'save', save)
    recorded = rows_in(output)
    del asked[:], pretend_training[:]
    experiment.main([*SAVED_RUN, '--output', str(output)])
    assert len(pretend_training) == 50 - recorded  # and no recorded row trained again
    assert len(asked) == 8 * 2 + 8 * 6 - asks_saved  # 8 * 2: the file's check replays the init points (no model)
    assert same_rows(output, uninterrupted_saved_run)
    assert not (tmp_path / 'results.searches.pickle').exists()


def finished_run(uninterrupted, folder):
    """A copy of the finished population-3 run in `folder`: (its CSV, its configuration JSON)."""
    output = folder / 'results.csv'
    shutil.copy(uninterrupted[3], output)
    shutil.copy(config_path(uninterrupted[3]), config_path(output))
    return output, config_path(output)


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
    output, config = finished_run(uninterrupted, tmp_path)
    output.write_text(damage(output.read_text().splitlines(keepends=True)))
    before = snapshot(tmp_path)
    stderr = refused(experiment.main, [*RUN, '--population', '3', '--output', str(output)], capsys)
    assert named in stderr and 'the file is left as it is' in stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('arguments, named', [
    (['--epochs', '2'], 'epochs 1 (now 2)'),
    (['--learning-rate-bounds', '0.001', '0.1'], 'learning_rate_bounds [0.0001, 0.1] (now [0.001, 0.1])'),
    (['--repetitions', '3', '--seed', '4'], 'repetitions 2 (now 3); seed 0 (now 4)'),
    (['--method', 'sobol'], "method ['bayesian', 'sobol'] (now ['sobol'])"),
    (['--training-size', '500'], 'training_size None (now 500)'),
])
def test_resuming_with_another_configuration_is_refused_naming_the_differences(uninterrupted, tmp_path, capsys,
                                                                               arguments, named):
    output, _ = finished_run(uninterrupted, tmp_path)
    before = snapshot(tmp_path)
    stderr = refused(experiment.main, [*RUN, *arguments, '--output', str(output)], capsys)
    assert f'{output} was made with another configuration ({named}' in stderr and '--fresh' in stderr
    assert snapshot(tmp_path) == before


def test_another_library_version_is_another_configuration(uninterrupted, tmp_path, capsys):
    output, config = finished_run(uninterrupted, tmp_path)
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
    output, config = finished_run(uninterrupted, tmp_path)
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
    output, config = finished_run(uninterrupted, tmp_path)
    saved = json.loads(config.read_text())
    assert saved.pop('results_format') == 3
    config.write_text(json.dumps(saved))  # as a run before format 2 saved it
    before = snapshot(tmp_path)
    for arguments in ([*RUN, '--output', str(output)], ['--report', str(output)]):
        stderr = refused(experiment.main, arguments, capsys)
        assert f'{output} is in results format 1, this code reads formats 2 and 3' in stderr and '--fresh' in stderr
    assert snapshot(tmp_path) == before


def test_a_results_file_without_its_configuration_is_refused(uninterrupted, tmp_path, capsys):
    output, config = finished_run(uninterrupted, tmp_path)
    config.unlink()
    before = snapshot(tmp_path)
    assert 'exists without its configuration' in refused(experiment.main, [*RUN, '--output', str(output)], capsys)
    assert snapshot(tmp_path) == before


def test_a_recorded_point_the_search_does_not_ask_for_stops_the_resume_and_nothing_is_written(uninterrupted,
                                                                                           tmp_path, capsys):
    output, config = finished_run(uninterrupted, tmp_path)
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
    output, config = finished_run(uninterrupted, tmp_path)
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
    output, config = finished_run(uninterrupted, tmp_path)
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
    finished_run(uninterrupted, tmp_path)  # a run whose files a bad name must not touch
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
    output, _ = finished_run(uninterrupted, tmp_path)
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
    output, config = finished_run(uninterrupted, tmp_path)
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
    output, config = finished_run(uninterrupted, tmp_path)
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
    output, config = finished_run(uninterrupted, tmp_path)
    config.write_text(json.dumps({**json.loads(config.read_text()), **change}))
    before = snapshot(tmp_path)
    for arguments in ([*RUN, '--population', '3', '--output', str(output)], ['--report', str(output)]):
        assert named in refused(experiment.main, arguments, capsys), arguments
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('line', [2, 5, 11])
def test_a_row_missing_in_the_middle_is_refused_by_resume_and_report_naming_it(line, uninterrupted, tmp_path, capsys):
    output, _ = finished_run(uninterrupted, tmp_path)
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


SMALL_RUN = ['--dataset', 'digits', '--device', 'cpu', '--method', 'random,bayesian', '--evaluations', '2',
             '--init-points', '1', '--repetitions', '1']


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


# Curves: every network's scores after each epoch, beside the results, written just before its row

CURVES_RUN = ['--dataset', 'digits', '--training-size', '200', '--epochs', '3', '--evaluations', '3',
              '--init-points', '2', '--repetitions', '2', '--method', 'bayesian,hyperband', '--population', '3',
              '--curves', '--device', 'cpu', '--quiet']


@pytest.fixture(scope='module')
def with_curves(tmp_path_factory):
    """A finished run of CURVES_RUN: its results CSV's path."""
    output = tmp_path_factory.mktemp('curves') / 'results.csv'
    experiment.main([*CURVES_RUN, '--output', str(output)])
    return output


def test_every_trained_row_has_its_curve_epoch_by_epoch_ending_in_its_scores(with_curves):
    rows = {(row['method'], row['repetition'], row['iteration']): row for row in read_rows(with_curves)}
    lines = read_rows(with_curves.with_suffix('.curves.csv'))
    curves = {}
    for line in lines:
        curves.setdefault((line['method'], line['repetition'], line['iteration']), []).append(line)
    assert set(curves) == {key for key, row in rows.items() if row['repeat_of'] == ''}
    for key, curve in curves.items():
        row = rows[key]
        scores = ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')
        assert [curve[-1][name] for name in scores] == [row[name] for name in scores]  # the same scoring, again
        epochs = [int(line['epoch']) for line in curve]
        assert epochs[-1] == int(row['epochs']) and epochs == list(range(epochs[0], epochs[-1] + 1))
        if row['method'] == 'hyperband' and int(row['epochs']) == 3 and row['bracket'] == '1':
            assert epochs == [2, 3]  # continued from its first rung's epoch: only the epochs it added
        elif row['method'] == 'bayesian':
            assert epochs == [1, 2, 3]


class Stopped(KeyboardInterrupt):
    """A stop signal, as stopping.Stopped, raised by the test."""


@pytest.mark.parametrize('writes, stop', [(1, 'before'), (4, 'between'), (6, 'after')])  # of the run's 7 appends
def test_a_run_with_curves_stopped_at_any_write_resumes_to_the_files_of_an_uninterrupted_run(
        writes, stop, with_curves, tmp_path, monkeypatch):
    """Stopped at the `writes`-th append: before its curves are written, between its curves and its rows, or after
    both."""
    write, appends = results.AppendedFile.write, []

    def stopping_write(self, data):
        rows_file = not self.path.endswith('.curves.csv')
        if (stop, rows_file, len(appends)) in (('before', False, writes - 1), ('between', True, writes - 1)):
            raise Stopped
        write(self, data)
        if rows_file:
            appends.append(data)
            if stop == 'after' and len(appends) == writes:
                raise Stopped
    monkeypatch.setattr(results.AppendedFile, 'write', stopping_write)
    output = tmp_path / 'results.csv'
    with pytest.raises(SystemExit):
        experiment.main([*CURVES_RUN, '--output', str(output)])
    monkeypatch.setattr(results.AppendedFile, 'write', write)
    experiment.main([*CURVES_RUN, '--output', str(output)])
    assert same_rows(output, with_curves)
    assert output.with_suffix('.curves.csv').read_bytes() == with_curves.with_suffix('.curves.csv').read_bytes()


def test_resuming_with_curves_other_than_the_files_is_refused(with_curves, tmp_path, capsys):
    for suffix in ('.csv', '.config.json', '.curves.csv'):
        shutil.copy(with_curves.with_suffix('').with_suffix(suffix), tmp_path / f'results{suffix}')
    before = snapshot(tmp_path)
    arguments = [argument for argument in CURVES_RUN if argument != '--curves']
    stderr = refused(experiment.main, [*arguments, '--output', str(tmp_path / 'results.csv')], capsys)
    assert 'curves True (now False)' in stderr
    (tmp_path / 'results.curves.csv').unlink()
    stderr = refused(experiment.main, [*CURVES_RUN, '--output', str(tmp_path / 'results.csv')], capsys)
    assert 'results.curves.csv is missing: the curves of the rows' in stderr
    assert snapshot(tmp_path) == {path: content for path, content in before.items()
                                  if path.name != 'results.curves.csv'}
