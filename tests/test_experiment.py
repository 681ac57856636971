"""The experiment driver test.py: a run end to end, the searches' points and seeds, populations against one network
at a time, divergence, the authors' Bayesian search (their Gaussian process proposes the paper's Table II, repeated
points answered as bayes_opt 1.0.1 answered them) and the progress shown."""
import fcntl
import json
import math
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
from bayes_opt import BayesianOptimization, target_space
from conftest import (ROOT, FakeResultsFile, pretend_scores, read_rows, refused, run_script, small_run, snapshot,
                      sorted_rows, typed_rows, without_seconds)

import local_training
import network
import results
import run_settings
import searches
import test as experiment

DIGITS_RUN = small_run(epochs=2)  # results are reproducible on CPU
SCORES = ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')


@pytest.fixture(scope='module')
def digits_run(finished_run):
    """The short end-to-end run of both methods on digits, as a user runs it: (folder, stdout, CSV rows)."""
    output, stdout = finished_run(DIGITS_RUN, script=True)
    return output.parent, stdout, read_rows(output)


def test_every_evaluation_is_a_csv_row(digits_run):
    _, _, rows = digits_run
    assert list(rows[0]) == list(results.COLUMNS)
    # written as they finish: the Bayesian repetitions advance in lockstep, all Sobol points train at once
    assert [(row['method'], row['repetition'], row['iteration']) for row in rows] == [
        ('bayesian', str(repetition), str(iteration)) for iteration in (1, 2, 3, 4) for repetition in (1, 2)] + [
        ('sobol', str(repetition), str(iteration)) for repetition in (1, 2) for iteration in (1, 2, 3, 4)]
    seeds = {(row['repetition'], row['iteration']): row['seed'] for row in rows if row['method'] == 'bayesian'}
    assert len(set(seeds.values())) == 8  # one seed per evaluation ...
    assert all(row['seed'] == seeds[row['repetition'], row['iteration']] for row in rows)  # ... shared by methods
    assert all(row['seed'] == str(searches.seed_for(0, int(row['repetition']), int(row['iteration'])))
               for row in rows)
    for row in rows:
        assert 0.0001 <= float(row['learning_rate']) <= 0.1 and 0 <= float(row['weight_decay']) <= 0.001
        assert 0 < float(row['val_loss']) < 5 and 0 <= float(row['val_accuracy']) <= 1
        assert 0 < float(row['test_loss']) < 5 and 0 <= float(row['test_accuracy']) <= 1
        assert float(row['seconds']) > 0
    # the two repetitions of a search explore different points
    for method in ('bayesian', 'sobol'):
        points = [(row['learning_rate'], row['repetition']) for row in rows if row['method'] == method]
        assert len({lr for lr, _ in points}) == 8


def test_tables_show_each_search_and_the_mean_and_std_of_their_best(digits_run):
    _, stdout, rows = digits_run
    tables = re.findall(r'Table II: (\w+), repetition (\d) \(search seed (\d+)\): 4 evaluations(, 2 init points)?, '
                        r'2 epochs per evaluation\n-+\n.*\n-+\n((?:.*\n){4})-+', stdout)
    assert [(method, repetition, int(seed), bool(init)) for method, repetition, seed, init, _ in tables] == [
        ('bayesian', '1', searches.seed_for(0, 1), True), ('bayesian', '2', searches.seed_for(0, 2), True),
        ('sobol', '1', searches.seed_for(0, 1), False), ('sobol', '2', searches.seed_for(0, 2), False)]
    bests = {}
    for method, repetition, _, _, body in tables:
        search = [row for row in rows if row['method'] == method and row['repetition'] == repetition]
        best = min(search, key=lambda row: float(row['val_loss']))
        bests.setdefault(method, []).append(best)
        lines = body.splitlines()
        assert [line.split()[0] for line in lines] == ['1', '2', '3', '4']
        assert [line.endswith('best') for line in lines] == [row is best for row in search]
        assert [' init' in line for line in lines] == [method == 'bayesian' and i < 2 for i in range(4)]
        for line, row in zip(lines, search):
            assert line.split()[1] == f'{float(row["val_loss"]):.4f}'
            assert line.split()[4] == f'{float(row["val_accuracy"]):.4f}'
    summary = stdout[stdout.index('Table I:'):]
    for method in ('bayesian', 'sobol'):
        loss = [float(best['val_loss']) for best in bests[method]]
        accuracy = [100 * float(best['val_accuracy']) for best in bests[method]]
        test_accuracy = [100 * float(best['test_accuracy']) for best in bests[method]]
        expected = [method, '2', f'{np.mean(loss):.4f}', f'{np.std(loss, ddof=1):.4f}',
                    f'{np.mean(accuracy):.4f}%', f'{np.std(accuracy, ddof=1):.4f}%',
                    f'{np.mean(test_accuracy):.4f}%', f'{np.std(test_accuracy, ddof=1):.4f}%']
        assert re.search(r'^' + r'\s+'.join(map(re.escape, expected)) + r'$', summary, re.MULTILINE)


def test_same_seed_gives_the_same_results_and_another_seed_does_not(digits_run, tmp_path, capsys):
    _, _, rows = digits_run
    experiment.main([*DIGITS_RUN, '--output', str(tmp_path / 'again.csv')])
    assert without_seconds(read_rows(tmp_path / 'again.csv')) == without_seconds(rows)
    experiment.main([*DIGITS_RUN, '--seed', '1', '--output', str(tmp_path / 'other.csv')])
    other = read_rows(tmp_path / 'other.csv')
    assert all(a['learning_rate'] != b['learning_rate'] and a['seed'] != b['seed'] for a, b in zip(rows, other))


def retrain(row, folder):
    """network.py's scores for a CSV row, trained alone."""
    result = run_script('network.py', '--dataset', 'digits', '--device', 'cpu', '--epochs', '2', '--seed', row['seed'],
                        '--learning-rate', row['learning_rate'], '--weight-decay', row['weight_decay'], cwd=folder)
    assert result.returncode == 0, result.stderr
    return dict(line.split() for line in result.stdout.splitlines())


def test_network_py_retrains_a_csv_row_to_the_same_numbers(digits_run, tmp_path):
    one_at_a_time = [*DIGITS_RUN, '--method', 'sobol', '--repetitions', '1', '--population', '1']
    experiment.main([*one_at_a_time, '--output', str(tmp_path / 'one.csv')])
    row = read_rows(tmp_path / 'one.csv')[2]
    printed = retrain(row, tmp_path)
    assert [printed[key] for key in SCORES] == [row[key] for key in SCORES]  # exactly: the same computation
    folder, _, rows = digits_run
    row = min(rows, key=lambda row: float(row['learning_rate']))  # trained in a population
    printed = retrain(row, folder)
    assert [float(printed[key]) for key in SCORES] == pytest.approx([float(row[key]) for key in SCORES], rel=1e-5)


def test_a_fashion_mnist_population_row_retrains_alone_to_float_rounding(fashion_mnist_dir, tmp_path):
    data = ['--dataset', 'fashion-mnist', '--data-dir', str(fashion_mnist_dir), '--training-size', '2000',
            '--validation-size', '2000', '--epochs', '2', '--device', 'cpu']
    experiment.main([*data, '--method', 'random', '--evaluations', '3', '--repetitions', '1', '--quiet',
                     '--learning-rate-bounds', '0.001', '0.03',  # rounding grows at high rates (docs)
                     '--output', str(tmp_path / 'results.csv')])
    assert json.loads((tmp_path / 'results.config.json').read_text())['training_size'] == 2000
    rows = read_rows(tmp_path / 'results.csv')
    row = min(rows, key=lambda row: float(row['val_loss']))  # trained in a population of 3
    result = run_script('network.py', *data, '--seed', row['seed'], '--learning-rate', row['learning_rate'],
                        '--weight-decay', row['weight_decay'], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = dict(line.split() for line in result.stdout.splitlines())
    assert [float(printed[key]) for key in SCORES] == pytest.approx([float(row[key]) for key in SCORES], rel=1e-5)
    assert float(row['val_accuracy']) > 0.2  # it learnt (chance is 0.1): 2,000 real images, 2 epochs


def fake_scores(learning_rate):
    loss = math.nan if learning_rate > 0.05 else 1 + 100 * learning_rate
    return dict(val_loss=loss, val_accuracy=0.1, test_loss=loss, test_accuracy=0.1, seconds=0.0)


@pytest.mark.parametrize('population', [1, 3])
def test_diverged_evaluations_are_recorded_and_tell_the_optimizer_a_finite_worst_loss(population, monkeypatch,
                                                                                      tmp_path):
    targets = []
    register = target_space.TargetSpace.register

    def spy(self, params, target, *rest):  # what the optimizer is told
        targets.append(target)
        return register(self, params, target, *rest)

    monkeypatch.setattr(target_space.TargetSpace, 'register', spy)
    monkeypatch.setattr(network, 'train_and_evaluate', lambda splits, **config: fake_scores(config['learning_rate']))
    monkeypatch.setattr(network, 'train_and_evaluate_population',
                        lambda splits, **config: [fake_scores(lr) for lr in config['learning_rates']])
    args = experiment.build_parser().parse_args(['--evaluations', '12', '--init-points', '4', '--repetitions', '1',
                                                 '--method', 'bayesian', '--population', str(population),
                                                 '--output', str(tmp_path / 'results.csv')])  # its searches' state
    results_file = FakeResultsFile(args)
    rows = experiment.run_searches(local_training.LocalTraining(None, args), args, results_file)
    assert len(rows) == 12 and results_file.appended == rows
    losses = [row['val_loss'] for row in rows]
    assert any(math.isnan(loss) for loss in losses) and any(math.isfinite(loss) for loss in losses)
    told = [i for i, row in enumerate(rows) if row['repeat_of'] is None]  # a repeated point is not told again
    assert len(targets) == len(told) >= 4 and any(math.isnan(losses[i]) for i in told)
    for i, target in zip(told, targets):
        worst = max([searches.DIVERGED_LOSS] + [x for x in losses[:i] if math.isfinite(x)])
        assert target == (-losses[i] if math.isfinite(losses[i]) else -worst)


def test_population_searches_propose_exactly_the_points_of_one_at_a_time_searches(tmp_path, pretend_training):
    run = ['--dataset', 'digits', '--device', 'cpu', '--evaluations', '7', '--init-points', '3', '--repetitions', '3',
           '--method', 'bayesian,bayesian-library,tpe,gp,sobol,random']
    experiment.main([*run, '--population', '1', '--output', str(tmp_path / '1.csv')])
    for population in (4, 18):  # rounds of 12 guided and 6 planned points: populations of 4, 4, 4, 4 and 2, or one
        experiment.main([*run, '--population', str(population), '--schedule', 'rounds',
                         '--output', str(tmp_path / f'rounds-{population}.csv')])
    one_at_a_time = sorted_rows(tmp_path / '1.csv')
    assert len(one_at_a_time) == 126
    assert len({row['learning_rate'] for row in one_at_a_time if row['method'] in ('sobol', 'random')}) == 42
    for name in ('rounds-4', 'rounds-18'):
        assert sorted_rows(tmp_path / f'{name}.csv') == one_at_a_time, name
    planned = [(method, repetition, iteration) for method in ('sobol', 'random') for repetition in (1, 2, 3)
               for iteration in range(1, 8)]
    assert [(row['method'], row['repetition'], row['iteration']) for row in typed_rows(tmp_path / 'rounds-4.csv')] == [
        key for iteration in range(1, 8)
        for key in [(method, repetition, iteration) for method in ('bayesian', 'bayesian-library', 'tpe', 'gp')
                    for repetition in (1, 2, 3)] + planned[6 * iteration - 6:6 * iteration]]


def test_lockstep_bayesian_searches_make_the_one_at_a_time_searches_when_networks_diverge(monkeypatch, tmp_path):
    def scores(learning_rate, seed):  # NaN above 0.05, as a diverged network scores
        return fake_scores(learning_rate) | dict(val_loss=fake_scores(learning_rate)['val_loss'] + seed % 1000 * 1e-5)
    monkeypatch.setattr(network, 'train_and_evaluate',
                        lambda splits, **config: scores(config['learning_rate'], config['seed']))
    monkeypatch.setattr(network, 'train_and_evaluate_population',
                        lambda splits, **config: [scores(*point) for point in zip(config['learning_rates'],
                                                                                  config['seeds'])])
    run = ['--dataset', 'digits', '--device', 'cpu', '--evaluations', '8', '--init-points', '3', '--repetitions', '4',
           '--method', 'bayesian,bayesian-library']
    for population in (1, 3):  # 3: the four repetitions step in populations of 3 and 1
        experiment.main([*run, '--population', str(population), '--output', str(tmp_path / f'{population}.csv')])
    one_at_a_time = sorted_rows(tmp_path / '1.csv')
    diverged = {(row['method'], row['repetition']) for row in one_at_a_time if row['val_loss'] == 'nan'}
    assert len(one_at_a_time) == 64 and len(diverged) >= 6  # most searches have diverged networks
    assert sorted_rows(tmp_path / '3.csv') == one_at_a_time


def test_population_searches_record_the_scores_of_one_at_a_time_searches(tmp_path):
    run = ['--dataset', 'digits', '--device', 'cpu', '--epochs', '2', '--evaluations', '4', '--init-points', '2',
           '--repetitions', '2', '--learning-rate-bounds', '0.001', '0.03']  # rounding grows at high rates (docs)
    for name, flags in [('1', ['--population', '1']), ('3', ['--population', '3']),
                        ('rounds', ['--population', '3', '--schedule', 'rounds'])]:
        experiment.main([*run, *flags, '--output', str(tmp_path / f'{name}.csv')])
    one_at_a_time = sorted_rows(tmp_path / '1.csv')
    for name in ('3', 'rounds'):
        rows = sorted_rows(tmp_path / f'{name}.csv')
        assert len(rows) == len(one_at_a_time) == 16
        for row, alone in zip(rows, one_at_a_time):
            assert row['seed'] == alone['seed']
            # Bayesian proposals after the init points depend on the scores' last digits: the test above checks them
            if row['method'] == 'sobol' or int(row['iteration']) <= 2:
                assert (row['learning_rate'], row['weight_decay']) == (alone['learning_rate'], alone['weight_decay'])
                assert [float(row[key]) for key in SCORES] == pytest.approx([float(alone[key]) for key in SCORES],
                                                                             rel=1e-4)


def test_a_really_diverging_search_finishes_and_reports_diverged(tmp_path, capsys):
    experiment.main(['--dataset', 'digits', '--device', 'cpu', '--epochs', '1', '--evaluations', '3',
                     '--init-points', '2', '--repetitions', '1', '--learning-rate-bounds', '1e20', '1e30',
                     '--output', str(tmp_path / 'results.csv')])
    rows = read_rows(tmp_path / 'results.csv')
    assert len(rows) == 6 and all(row['val_loss'] == 'nan' for row in rows)
    stdout = capsys.readouterr().out
    assert stdout.count('diverged') >= 6
    assert re.search(r'^bayesian\s+1\s+nan\s+n<2', stdout, re.MULTILINE)  # every loss diverged; one run


def test_seeds_are_fixed_distinct_and_independent_of_the_budgets():
    assert searches.seed_for(0, 1, 1) == 901243215  # pinned: a change here changes every published number
    seeds = {searches.seed_for(0, repetition, iteration) for repetition in range(1, 11) for iteration in range(1, 26)}
    seeds |= {searches.seed_for(0, repetition) for repetition in range(1, 11)}
    assert len(seeds) == 260


@pytest.mark.parametrize('population', ['1', '4'])
def test_a_random_search_run_trains_its_seeded_points(population, tmp_path):
    run = ['--dataset', 'digits', '--epochs', '1', '--evaluations', '4', '--repetitions', '2', '--method', 'random',
           '--device', 'cpu', '--population', population]
    for name in ('first', 'again'):
        experiment.main([*run, '--output', str(tmp_path / f'{name}.csv')])
    rows = typed_rows(tmp_path / 'first.csv')
    for repetition in (1, 2):
        points = searches.random_points({'learning_rate': (0.0001, 0.1), 'weight_decay': (0, 0.001)}, evaluations=4,
                                        seed=searches.seed_for(0, repetition))
        assert [{'learning_rate': row['learning_rate'], 'weight_decay': row['weight_decay']}
                for row in rows if row['repetition'] == repetition] == points
    assert [{**row, 'seconds': 0} for row in typed_rows(tmp_path / 'again.csv')] == [{**row, 'seconds': 0}
                                                                                      for row in rows]


def test_a_log_scale_searches_the_learning_rates_log10_within_the_bounds(tmp_path, capsys):
    args = experiment.build_parser().parse_args(['--lr-scale', 'log', '--learning-rate-bounds', '0.003', '0.07'])
    settings = run_settings.Settings.of(args)
    assert settings.box() == {'log10_learning_rate': (math.log10(0.003), math.log10(0.07)), 'weight_decay': (0, 0.001)}
    top = settings.new_row('random', 1, 1, {'log10_learning_rate': math.log10(0.07), 'weight_decay': 0})
    assert top['learning_rate'] == 0.07  # 10 ** log10(0.07) is 0.07000000000000002: kept inside the bounds
    run = ['--dataset', 'digits', '--epochs', '1', '--evaluations', '12', '--init-points', '3', '--repetitions', '1',
           '--device', 'cpu', '--lr-scale', 'log', '--learning-rate-bounds', '0.0001', '0.1',
           '--method', 'bayesian,sobol,random', '--output', str(tmp_path / 'results.csv')]
    experiment.main(run)
    rows = typed_rows(tmp_path / 'results.csv')
    assert len(rows) == 36 and all(0.0001 <= row['learning_rate'] <= 0.1 for row in rows)
    sobol = [row['learning_rate'] for row in rows if row['method'] == 'sobol']
    assert sum(lr < 0.01 for lr in sobol) >= 6  # two thirds of the log range; under 10% of the linear one
    assert json.loads((tmp_path / 'results.config.json').read_text())['lr_scale'] == 'log'
    capsys.readouterr()
    experiment.main(run)  # the finished file resumes: the replayed points are the recorded ones
    assert '36 of 36 evaluations are recorded' in capsys.readouterr().out


def test_a_bayesian_search_makes_exactly_its_budget_of_evaluations_starting_with_random_points(pretend_training,
                                                                                               tmp_path):
    experiment.main(['--dataset', 'digits', '--device', 'cpu', '--evaluations', '7', '--init-points', '3',
                     '--repetitions', '1', '--method', 'bayesian', '--output', str(tmp_path / 'results.csv')])
    rows = read_rows(tmp_path / 'results.csv')
    assert [row['iteration'] for row in rows] == ['1', '2', '3', '4', '5', '6', '7']
    state = np.random.RandomState(searches.seed_for(0, 1))  # bayes_opt draws init points from its random_state
    expected = [(state.uniform(0.0001, 0.1), state.uniform(0, 0.001)) for _ in range(3)]
    np.testing.assert_allclose([(float(row['learning_rate']), float(row['weight_decay'])) for row in rows[:3]],
                               expected, rtol=1e-12)


RUN = small_run(epochs=None, evaluations=5, method='bayesian')
CORNER = {'learning_rate': 0.1, 'weight_decay': 0.001}


@pytest.fixture
def proposes_the_corner(monkeypatch):
    """Every Gaussian-process proposal is the corner of the box, so that each search must repeat it; the list of the
    points told to the optimizers."""
    monkeypatch.setattr(BayesianOptimization, 'suggest', lambda self: dict(CORNER))
    told = []
    register = target_space.TargetSpace.register
    monkeypatch.setattr(target_space.TargetSpace, 'register',
                        lambda self, params, *rest: told.append(dict(params)) or register(self, params, *rest))
    return told


@pytest.mark.parametrize('population', [1, 3])
def test_a_point_proposed_again_is_answered_from_its_row_untrained_and_untold(population, proposes_the_corner,
                                                                             pretend_training, tmp_path, capsys):
    experiment.main([*RUN, '--population', str(population), '--output', str(tmp_path / 'results.csv')])
    rows = read_rows(tmp_path / 'results.csv')
    assert len(rows) == 10 and len(pretend_training) == 6  # per search: 2 init points and the corner once
    assert len(proposes_the_corner) == 6  # nothing new for the Gaussian process
    for repetition in ('1', '2'):
        search = [row for row in rows if row['repetition'] == repetition]
        corner = search[2]
        assert (float(corner['learning_rate']), float(corner['weight_decay'])) == tuple(CORNER.values())
        assert [row['repeat_of'] for row in search] == ['', '', '', '3', '3']
        for row in search[3:]:  # its scores, and the seed of the network that gave them; no training time
            assert {**row, 'iteration': '3', 'repeat_of': '', 'seconds': corner['seconds']} == corner
            assert (row['seconds'], corner['seconds']) == ('0.0', '1.0')
    stdout = capsys.readouterr().out
    assert stdout.count('repeat of 3\n') == 4 and stdout.count('(repeat of 3)') == 4  # Table II, progress lines


@pytest.mark.parametrize('population', [1, 3])
def test_a_resumed_search_answers_its_recorded_repeats_again(population, proposes_the_corner, pretend_training,
                                                             tmp_path):
    full = tmp_path / 'full.csv'
    experiment.main([*RUN, '--population', str(population), '--output', str(full)])
    lines, rows = full.read_text().splitlines(keepends=True), read_rows(full)
    size = 1 if population == 1 else 2  # rows per population: in lockstep, both repetitions' points of a step
    populations = [rows[start:start + size] for start in range(0, len(rows), size)]
    for kept in range(1, len(lines) + 1):  # stopped after each row
        output = tmp_path / f'cut-{kept}.csv'
        output.write_text(''.join(lines[:kept]))
        shutil.copy(tmp_path / 'full.config.json', tmp_path / f'cut-{kept}.config.json')
        trained_before = len(pretend_training)
        experiment.main([*RUN, '--population', str(population), '--output', str(output)])
        assert output.read_text() == full.read_text()
        # a population the file does not hold whole is retrained whole: its new points, not its repeats
        retrained = [row for number, members in enumerate(populations, 1) if number * size > kept - 1
                     for row in members if row['repeat_of'] == '']
        assert len(pretend_training) - trained_before == len(retrained)


def test_a_repeat_whose_scores_differ_from_its_original_is_refused(proposes_the_corner, pretend_training, tmp_path,
                                                                   capsys):
    output = tmp_path / 'results.csv'
    experiment.main([*RUN, '--population', '3', '--output', str(output)])
    lines = output.read_text().splitlines(keepends=True)
    assert lines[7].startswith('bayesian,1,4,3,')
    fields = lines[7].split(',')
    fields[results.COLUMNS.index('val_loss')] = '0.25'
    output.write_text(''.join(lines[:7] + [','.join(fields)] + lines[8:]))
    before = snapshot(tmp_path)
    stderr = refused(experiment.main, [*RUN, '--population', '3', '--output', str(output)], capsys)
    assert 'line 8: a repeat of iteration 3, which the file does not record at the same point with the same scores' \
        in stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('recorded, trained, written', [
    ((), [2, 4], [2, 3, 4]),  # a new file: populations [2, repeat 3] and [4]
    ((2,), [4], [3, 4]),  # stopped after writing iteration 2: its repeat is written, nothing retrained
    ((3,), [2, 4], [2, 4]),
    ((2, 3), [4], [4]),
])
def test_a_population_of_repeats_and_new_points_trains_the_new_points_only(recorded, trained, written,
                                                                          pretend_training):
    args = experiment.build_parser().parse_args(['--population', '2'])

    def row(iteration, learning_rate):
        return run_settings.Settings.of(args).new_row('bayesian', 1, iteration, {'learning_rate': learning_rate,
                                                                                'weight_decay': 0})
    original = {**row(1, 0.01), **pretend_scores(0.01, 0, 7)}
    rows = [row(2, 0.02), searches.answered_from_cache(row(3, 0.01), [original]), row(4, 0.04)]
    file = FakeResultsFile(args, {iteration: pretend_scores(0.5, 0, 0) for iteration in recorded})
    experiment.score_and_record(rows, local_training.LocalTraining(None, args), args, file)
    assert [learning_rate for learning_rate, _, _ in pretend_training] == [{2: 0.02, 4: 0.04}[i] for i in trained]
    assert [row['iteration'] for row in file.appended] == written
    assert rows[1]['repeat_of'] == 1 and rows[1]['seed'] == original['seed']
    assert rows[1]['val_loss'] == (pretend_scores(0.5, 0, 0) if 3 in recorded else original)['val_loss']


def run_on_a_terminal(arguments, cwd):
    """Run test.py with its standard error on a pseudo-terminal 100 columns wide: (stdout, what the terminal got)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack('HHHH', 30, 100, 0, 0))
    process = subprocess.Popen([sys.executable, str(ROOT / 'test.py'), *arguments], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=terminal, text=True)
    os.close(terminal)
    shown = b''
    while True:  # read as it is written, or the terminal's buffer fills and the run blocks
        if select.select([controller], [], [], 1)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the run closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    stdout = process.communicate(timeout=600)[0]
    os.close(controller)
    assert process.returncode == 0, shown
    return stdout, shown.decode(errors='replace')


RUN_SMALL = small_run(evaluations=2, init_points=1, method='bayesian,sobol', population=1)


def test_on_a_terminal_a_progress_bar_replaces_the_lines_and_quiet_silences_both(tmp_path, monkeypatch, capsys):
    stdout, shown = run_on_a_terminal([*RUN_SMALL, '--output', 'bar.csv'], tmp_path)
    assert '8/8' in shown and 'sobol repetition 2/2' in shown and 'best validation loss' in shown
    stdout, shown = run_on_a_terminal([*RUN_SMALL[:-1], '4', '--schedule', 'rounds', '--output', 'rounds.csv'],
                                      tmp_path)
    # each population holds both Bayesian repetitions and two Sobol points
    assert 'bayesian repetitions 1-2/2, sobol repetition 1/2' in shown and '8/8' in shown
    assert 'evaluation 1/2' not in stdout and 'Table I:' in stdout
    experiment.main([*RUN_SMALL, '--output', str(tmp_path / 'lines.csv')])  # not a terminal
    stdout, stderr = capsys.readouterr()
    assert stderr == '' and stdout.count(' evaluation ') == 8
    assert 'sobol repetition 2/2 evaluation 2/2: lr ' in stdout
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    experiment.main([*RUN_SMALL, '--output', str(tmp_path / 'quiet.csv'), '--quiet'])
    stdout, stderr = capsys.readouterr()
    assert stderr == '' and 'evaluation 1/2' not in stdout and 'Table I:' in stdout
