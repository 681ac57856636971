"""Nothing lost: a run stopped anywhere, by a signal or a kill, resumes to the file of an uninterrupted one,
whatever its population, continuing its searches from their saved state or replaying them; with curves too."""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import (ROOT, config_path, population_flags, pretend_population, read_rows, refused, rows_in, same_rows,
                      small_run, snapshot, sorted_rows, start_and_stop, without_seconds)

import network
import results
import search_states
import searches
import test as experiment

RUN = small_run()  # 16 evaluations; results are reproducible on CPU (conftest's uninterrupted: never stopped)


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
    experiment.main([*RUN, *population_flags(population), '--output', str(output)])
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


@pytest.fixture(scope='module')
def full_runs():
    """{population: the finished run of the test below at that population}, filled in by the test."""
    return {}


@pytest.mark.parametrize('before, after', [(3, 1), (3, 2), (1, 3), (1, None), ('rounds', 3), (3, 'rounds')])
@pytest.mark.parametrize('rows_kept', [3, 7, 12])
def test_a_run_resumed_with_another_population_makes_the_same_searches(before, after, rows_kept, pretend_training,
                                                                       full_runs, tmp_path):
    run = [*RUN, '--method', 'bayesian,sobol,random', '--repetitions', '3']  # lockstep over 3 repetitions
    if before not in full_runs:  # made once for every test of this population (pretend training is exact)
        full_runs[before] = tmp_path / 'full.csv'
        experiment.main([*run, *population_flags(before), '--output', str(full_runs[before])])
    full = full_runs[before]
    lines = full.read_text().splitlines(keepends=True)
    output = tmp_path / 'resumed.csv'
    output.write_text(''.join(lines[:rows_kept + 1]) + lines[rows_kept + 1][:15])
    shutil.copy(config_path(full), config_path(output))
    del pretend_training[:]
    experiment.main([*run, *(population_flags(after) if after else []), '--output', str(output)])
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
SAVED_RUN = small_run(evaluations=5, method='bayesian,bayesian-library,tpe,gp,sobol', population=3,
                      schedule='rounds', quiet=True)


def unreadable(output):
    output.with_name('results.searches.pickle').write_bytes(b'not a pickle')


def cut_after_round_2(output):  # the file then holds less than the state of round 3 it stopped after
    output.write_text(''.join(output.read_text().splitlines(keepends=True)[:1 + 2 * 10]))


def of_another_run(output):  # signed by this user, but saved by a run of other settings (another --init-points, say)
    with open(output.with_name('results.searches.pickle'), 'rb') as file:
        rounds = pickle.loads(file.read()[len(search_states.MAGIC) + 32:])
    search_states.save(str(output), rounds._replace(run=search_states.run_hash({'init_points': 3})))


class Planted:
    """What a hostile pickle holds: unpickled, it runs a command (here it makes the file planted.txt)."""

    def __init__(self, folder):
        self.folder = folder

    def __reduce__(self):
        return os.system, (f'touch {self.folder}/planted.txt',)


def planted(output):  # a pickle that runs code, unsigned or signed with another key
    data = pickle.dumps(Planted(output.parent))
    output.with_name('results.searches.pickle').write_bytes(search_states.MAGIC + bytes(32) + data)


@pytest.fixture(scope='module')
def uninterrupted_saved_run(tmp_path_factory):
    """SAVED_RUN never stopped: its results file."""
    output = tmp_path_factory.mktemp('uninterrupted') / 'results.csv'
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(network, 'train_and_evaluate_population', pretend_population)
        experiment.main([*SAVED_RUN, '--output', str(output)])
    assert not output.with_name('results.searches.pickle').exists()  # removed once the searches end
    return output


@pytest.mark.parametrize('damage, asks_saved, why', [
    (None, 3 * 8, None), (unreadable, 0, "it is not signed with the key of this user's runs"),
    (cut_after_round_2, 0, 'the results file does not record every row it holds'),
    (of_another_run, 0, 'it belongs to a run of other settings'),
    (planted, 0, "it is not signed with the key of this user's runs")],
    ids=['saved', 'an unreadable state', 'a file cut back before it', "another run's state", 'a planted pickle'])
def test_a_resume_continues_the_searches_from_their_saved_state_and_replays_them_without_it(
        damage, asks_saved, why, uninterrupted_saved_run, pretend_training, tmp_path, monkeypatch, capsys):
    """Stopped just after round 3's state is saved: the resume asks the guided searches only for their later points
    (8 x 6 asks uninterrupted), and writes the file of an uninterrupted run; a state it cannot use (one line says
    why) is replayed, to the same file, and a pickle it did not sign is never unpickled."""
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
    monkeypatch.setattr(search_states, 'save', save)
    if damage:
        damage(output)
    recorded = rows_in(output)
    del asked[:], pretend_training[:]
    capsys.readouterr()
    experiment.main([*SAVED_RUN, '--output', str(output)])
    assert len(pretend_training) == 50 - recorded  # and no recorded row trained again
    assert len(asked) == 8 * 2 + 8 * 6 - asks_saved  # 8 * 2: the file's check replays the init points (no model)
    assert same_rows(output, uninterrupted_saved_run)
    assert not (tmp_path / 'results.searches.pickle').exists() and not (tmp_path / 'planted.txt').exists()
    said = [line for line in capsys.readouterr().out.splitlines() if 'results.searches.pickle is not used' in line]
    assert len(said) == (1 if why else 0) and all(line.startswith(f'{tmp_path}/results.searches.pickle is not used '
                                                                  f'({why}') for line in said)


def test_a_new_run_reads_no_saved_state_and_a_planted_pickle_runs_nothing(pretend_training, tmp_path, capsys):
    planted(tmp_path / 'results.csv')
    experiment.main([*SAVED_RUN, '--output', str(tmp_path / 'results.csv')])
    assert not (tmp_path / 'planted.txt').exists() and 'is not used' not in capsys.readouterr().out
    assert rows_in(tmp_path / 'results.csv') == 50


def test_the_saved_state_is_signed_with_a_key_only_its_owner_reads(tmp_path):
    key = search_states.key(make=True)
    assert len(key) == 32 and search_states.key(make=False) == key
    assert os.stat(search_states.key_path()).st_mode & 0o777 == 0o600
    assert not search_states.key_path().startswith(str(tmp_path))  # outside any results folder



# Curves: every network's scores after each epoch, beside the results, written just before its row

CURVES_RUN = small_run(training_size=200, epochs=3, evaluations=3, method='bayesian,hyperband', population=3,
                       curves=True, quiet=True)


@pytest.fixture(scope='module')
def with_curves(finished_run):
    """A finished run of CURVES_RUN: its results CSV's path."""
    return finished_run(CURVES_RUN)


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


def test_more_repetitions_extend_a_finished_run_to_the_rows_of_a_run_made_with_them(pretend_training, tmp_path):
    """Each repetition is seeded on its own, so the same command with a larger --repetitions records the rows that a
    run made with that many from the start records (in another order); search after search (--population 1) it
    trains only the new repetitions' networks (in populations, one partly recorded is retrained whole)."""
    run = small_run(method='bayesian,sobol,grid', repetitions=None)
    extended, fresh = tmp_path / 'extended.csv', tmp_path / 'fresh.csv'
    experiment.main([*run, '--repetitions', '2', '--output', str(extended)])
    del pretend_training[:]
    experiment.main([*run, '--repetitions', '3', '--population', '1', '--output', str(extended)])
    trained_seeds = {seed for _, _, seed in pretend_training}
    experiment.main([*run, '--repetitions', '3', '--output', str(fresh)])
    assert trained_seeds == {int(row['seed']) for row in read_rows(fresh) if row['repetition'] == '3'}
    assert without_seconds(sorted_rows(extended)) == without_seconds(sorted_rows(fresh))
    assert json.loads(config_path(extended).read_text())['repetitions'] == 3


def with_learning_rate_nudged(path, repetition, iteration):
    """Rewrite a results CSV with one row's learning rate changed in its last digits, as another machine's model fits
    would propose it; return the nudged value."""
    rows = read_rows(path)
    row = next(row for row in rows if (row['repetition'], row['iteration']) == (str(repetition), str(iteration)))
    row['learning_rate'] = str(float(row['learning_rate']) * (1 + 1e-12))
    with open(path, 'w', newline='') as file:
        file.write(','.join(rows[0]) + '\n' + ''.join(','.join(row.values()) + '\n' for row in rows))
    return row['learning_rate']


def test_more_repetitions_of_a_guided_search_extend_a_run_made_on_another_machine(tmp_path, capsys):
    """Search after search (--population 1), a search the file records whole is read, not replayed: a guided
    search's later points, which another machine's arithmetic proposes a few last digits apart, need not be
    proposed again to extend the run. A search the file records in part is replayed, and checked, as before."""
    run = small_run(method='bayesian', population=1, repetitions=None)
    extended, fresh = tmp_path / 'extended.csv', tmp_path / 'fresh.csv'
    experiment.main([*run, '--repetitions', '2', '--output', str(extended)])
    nudged = with_learning_rate_nudged(extended, repetition=1, iteration=4)
    experiment.main([*run, '--repetitions', '3', '--output', str(extended)])
    experiment.main([*run, '--repetitions', '3', '--output', str(fresh)])
    rows = without_seconds(sorted_rows(extended))
    assert [row for row in rows if row['repetition'] == '3'] == [
        row for row in without_seconds(sorted_rows(fresh)) if row['repetition'] == '3']
    assert rows[3]['learning_rate'] == nudged

    lines = extended.read_text().splitlines(keepends=True)
    extended.write_text(''.join(line for line in lines if not line.startswith('bayesian,3,4,')))
    with_learning_rate_nudged(extended, repetition=3, iteration=3)
    with pytest.raises(SystemExit) as exit:
        experiment.main([*run, '--repetitions', '3', '--output', str(extended)])
    assert exit.value.code == 1 and 'differ only in their last digits' in capsys.readouterr().err
