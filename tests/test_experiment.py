"""The experiment driver test.py: searches, results file, tables, seeds, divergence and bad input."""
import contextlib
import csv
import io
import math
import os
import random
import re
import tempfile

import numpy as np
import optunity
import pytest
from bayes_opt import target_space
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from conftest import run_script

import network
import report
import test as experiment

BOUNDS = {'learning_rate': (0.0001, 0.1), 'weight_decay': (0, 0.001)}
DIGITS_RUN = ['--dataset', 'digits', '--epochs', '2', '--evaluations', '4', '--init-points', '2',
              '--repetitions', '2', '--method', 'both', '--device', 'cpu']  # results are reproducible on CPU


SCORES = ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')


def read_rows(path):
    with open(path, newline='') as file:
        return list(csv.DictReader(file))


def without_seconds(rows):
    return [{key: value for key, value in row.items() if key != 'seconds'} for row in rows]


@pytest.fixture(scope='module')
def digits_run(tmp_path_factory):
    """The short end-to-end run of both methods on digits, as a user runs it: (folder, stdout, CSV rows)."""
    folder = tmp_path_factory.mktemp('digits-run')
    result = run_script('test.py', *DIGITS_RUN, '--output', 'results.csv', cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, result.stdout, read_rows(folder / 'results.csv')


def test_every_evaluation_is_a_csv_row(digits_run):
    _, _, rows = digits_run
    assert list(rows[0]) == list(experiment.CSV_COLUMNS)
    # written as they finish: the Bayesian repetitions advance in lockstep, all Sobol points train at once
    assert [(row['method'], row['repetition'], row['iteration']) for row in rows] == [
        ('bayesian', str(repetition), str(iteration)) for iteration in (1, 2, 3, 4) for repetition in (1, 2)] + [
        ('sobol', str(repetition), str(iteration)) for repetition in (1, 2) for iteration in (1, 2, 3, 4)]
    seeds = {(row['repetition'], row['iteration']): row['seed'] for row in rows if row['method'] == 'bayesian'}
    assert len(set(seeds.values())) == 8  # one seed per evaluation ...
    assert all(row['seed'] == seeds[row['repetition'], row['iteration']] for row in rows)  # ... shared by methods
    assert all(row['seed'] == str(experiment.seed_for(0, int(row['repetition']), int(row['iteration'])))
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
        ('bayesian', '1', experiment.seed_for(0, 1), True), ('bayesian', '2', experiment.seed_for(0, 2), True),
        ('sobol', '1', experiment.seed_for(0, 1), False), ('sobol', '2', experiment.seed_for(0, 2), False)]
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


def test_sobol_search_evaluates_optunitys_sequence_from_the_seeded_skip():
    points = []
    experiment.sobol_search(lambda **point: points.append(point) or 0.0, BOUNDS, evaluations=25, seed=7)
    random.seed(7)
    skip = random.randint(200, 1000)
    unit = optunity.solvers.Sobol.i4_sobol_generate(2, 25, skip)
    shrunk = {'learning_rate': (0.0005995, 0.0995005), 'weight_decay': (0.000005, 0.000995)}  # optunity's 99%
    expected = [{name: low + u * (high - low) for (name, (low, high)), u in zip(shrunk.items(), x)} for x in unit]
    assert len(points) == 25
    for point, want in zip(points, expected):
        assert point == pytest.approx(want, rel=1e-9, abs=1e-15)
    again = []
    experiment.sobol_search(lambda **point: again.append(point) or 0.0, BOUNDS, evaluations=25, seed=7)
    assert again == points


def fake_scores(learning_rate):
    loss = math.nan if learning_rate > 0.05 else 1 + 100 * learning_rate
    return dict(val_loss=loss, val_accuracy=0.1, test_loss=loss, test_accuracy=0.1, seconds=0.0)


class NewResults:
    """What the searches need of test.Results, for a results file that records nothing yet."""
    show_bar = False

    def __init__(self):
        self.written = []

    def recorded_scores(self, row):
        return None

    def write(self, rows):
        self.written += rows


@pytest.mark.parametrize('population', [1, 3])
def test_diverged_evaluations_are_recorded_and_tell_the_optimiser_a_finite_worst_loss(population, monkeypatch):

    targets = []
    register = target_space.TargetSpace.register

    def spy(self, params, target, *rest):  # what the optimiser is told
        targets.append(target)
        return register(self, params, target, *rest)

    monkeypatch.setattr(target_space.TargetSpace, 'register', spy)
    monkeypatch.setattr(network, 'train_and_evaluate', lambda splits, **config: fake_scores(config['learning_rate']))
    monkeypatch.setattr(network, 'train_and_evaluate_population',
                        lambda splits, **config: [fake_scores(lr) for lr in config['learning_rates']])
    args = experiment.build_parser().parse_args(['--evaluations', '12', '--init-points', '4', '--repetitions', '1',
                                                 '--population', str(population)])
    results = NewResults()
    rows = experiment.run_searches('bayesian', None, args, results)
    assert len(rows) == 12 and results.written == rows
    losses = [row['val_loss'] for row in rows]
    assert any(math.isnan(loss) for loss in losses) and any(math.isfinite(loss) for loss in losses)
    told = [i for i, row in enumerate(rows) if row['repeat_of'] is None]  # a repeated point is not told again
    assert len(targets) == len(told)
    for i, target in zip(told, targets):
        worst = max([experiment.DIVERGED_LOSS] + [x for x in losses[:i] if math.isfinite(x)])
        assert target == (-losses[i] if math.isfinite(losses[i]) else -worst)


def sorted_rows(path):
    return sorted(read_rows(path), key=lambda row: (row['method'], int(row['repetition']), int(row['iteration'])))


def test_population_searches_propose_exactly_the_points_of_one_at_a_time_searches(tmp_path, pretend_training):
    run = ['--dataset', 'digits', '--device', 'cpu', '--evaluations', '7', '--init-points', '3', '--repetitions', '3',
           '--method', 'bayesian,bayesian-library,sobol,random']
    for population in (1, 2, 3):  # 2: three repetitions train as populations of 2 and 1
        experiment.main([*run, '--population', str(population), '--output', str(tmp_path / f'{population}.csv')])
    one_at_a_time = sorted_rows(tmp_path / '1.csv')
    assert len(one_at_a_time) == 84
    assert len({row['learning_rate'] for row in one_at_a_time if row['method'] in ('sobol', 'random')}) == 42
    assert sorted_rows(tmp_path / '2.csv') == sorted_rows(tmp_path / '3.csv') == one_at_a_time


def test_population_searches_record_the_scores_of_one_at_a_time_searches(tmp_path):
    run = ['--dataset', 'digits', '--device', 'cpu', '--epochs', '2', '--evaluations', '4', '--init-points', '2',
           '--repetitions', '2', '--learning-rate-bounds', '0.001', '0.03']  # rounding grows at high rates: README
    for population in (1, 3):
        experiment.main([*run, '--population', str(population), '--output', str(tmp_path / f'{population}.csv')])
    rows, one_at_a_time = sorted_rows(tmp_path / '3.csv'), sorted_rows(tmp_path / '1.csv')
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
    assert re.search(r'^bayesian\s+1\s+nan\s+nan', stdout, re.MULTILINE)


def test_table_one_uses_each_repetitions_best_finite_evaluation():
    rows = [dict(method='sobol', repetition=repetition, iteration=i, val_loss=loss, val_accuracy=accuracy,
                 test_accuracy=accuracy / 2)
            for repetition, i, loss, accuracy in [(1, 1, 1.0, 0.5), (1, 2, math.nan, 0.1), (1, 3, 2.0, 0.4),
                                                  (2, 1, 3.0, 0.2), (2, 2, 1.5, 0.7), (3, 1, 1.25, 0.6)]]
    (method, runs, loss, loss_std, accuracy, accuracy_std, test_accuracy, test_std), = report.summary_rows(
        rows, ['sobol'])
    assert (method, runs) == ('sobol', 3)
    assert loss == pytest.approx(1.25) and loss_std == pytest.approx(0.25)
    assert accuracy == pytest.approx(60) and accuracy_std == pytest.approx(10)
    assert test_accuracy == pytest.approx(30) and test_std == pytest.approx(5)


def test_seeds_are_fixed_distinct_and_independent_of_the_budgets():
    assert experiment.seed_for(0, 1, 1) == 901243215  # pinned: a change here changes every published number
    seeds = {experiment.seed_for(0, repetition, iteration) for repetition in range(1, 11) for iteration in range(1, 26)}
    seeds |= {experiment.seed_for(0, repetition) for repetition in range(1, 11)}
    assert len(seeds) == 260


BAD_INPUTS = [
    (['--dataset', 'imagenet'], "invalid choice: 'imagenet'"),
    (['--method', 'grid'], "invalid method 'grid'"),
    (['--method', 'sobol,grid'], "invalid method 'grid'"),
    (['--method', 'sobol,'], "invalid method ''"),
    (['--method', 'random,sobol,random'], "method list 'random,sobol,random' names a method twice"),
    (['--lr-scale', 'cubic'], "invalid choice: 'cubic'"),
    (['--lr-scale', 'log', '--learning-rate-bounds', '0', '0.1'], '--lr-scale log needs a positive'),
    (['--learning-rate-bounds', '0.1', '0.0001'], '--learning-rate-bounds 0.1 0.0001'),
    (['--weight-decay-bounds', '0.001', '0'], '--weight-decay-bounds 0.001 0'),
    (['--weight-decay-bounds', '-1', '0.001'], '--weight-decay-bounds -1 0.001'),
    (['--epochs', '0'], '--epochs 0'),
    (['--evaluations', '-3'], '--evaluations -3'),
    (['--repetitions', '0'], '--repetitions 0'),
    (['--population', '0'], '--population 0'),
    (['--evaluations', '4', '--init-points', '5'], '--init-points 5'),
    (['--init-points', '0'], '--init-points 0'),
    (['--validation-size', '50000'], '--validation-size 50000'),
    (['--dataset', 'digits', '--validation-size', '1437'], '--validation-size 1437'),
    (['--batch-size', '0'], '--batch-size 0'),
    (['--seed', '-1'], '--seed -1'),
    (['--device', 'tpu'], "--device 'tpu'"),
    (['--device', 'cuda:99'], '--device cuda:99'),
    (['--epochs', 'ten'], "invalid int value: 'ten'"),
]


@pytest.mark.parametrize('arguments, named', BAD_INPUTS, ids=[' '.join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_value_and_exit_status_2(arguments, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        experiment.main([*arguments, '--output', str(tmp_path / 'results.csv')])
    stderr = capsys.readouterr().err
    assert exit.value.code == 2
    assert stderr.count('\n') == 1 and ': error: ' in stderr and named in stderr
    assert not (tmp_path / 'results.csv').exists()


@pytest.mark.parametrize('arguments, population', [([], 10), (['--population', '3'], 3)])
def test_the_population_defaults_to_10_on_cpu(arguments, population, tmp_path):
    parser = experiment.build_parser()
    args = parser.parse_args(['--device', 'cpu', *arguments, '--output', str(tmp_path / 'results.csv')])
    experiment.check_arguments(parser, args)
    assert args.population == population


def mostly(valid, invalid):
    """Command-line text: mostly a `valid` value, one time in ten an `invalid` one or text that is no number."""
    invalid = st.one_of(invalid, st.sampled_from(['', 'ten', '1,5', '-', '--epochs']))
    return st.integers(0, 9).flatmap(lambda draw: invalid if draw == 0 else valid).map(str)


def bounds(low, high):
    """Two bound texts: mostly LOW < HIGH within [low, high], one time in ten any two floats (NaN, infinite,
    negative, reversed or equal ones included)."""
    valid = st.lists(st.floats(low, high), min_size=2, max_size=2, unique=True).map(sorted)
    return st.integers(0, 9).flatmap(lambda draw: st.lists(mostly(st.floats(), st.nothing()), min_size=2,
                                                           max_size=2) if draw == 0 else valid.map(
                                                               lambda pair: [str(value) for value in pair]))


FLAGS = {'--evaluations': mostly(st.integers(2, 3), st.integers(-2, 0)),
         '--init-points': mostly(st.integers(1, 2), st.integers(-2, 0)),
         '--epochs': mostly(st.just(1), st.integers(-2, 0)),
         '--repetitions': mostly(st.integers(1, 2), st.integers(-2, 0)),
         '--population': mostly(st.integers(1, 4), st.integers(-2, 0)),
         '--batch-size': mostly(st.integers(8, 3000), st.integers(-2, 0)),
         '--validation-size': mostly(st.integers(1, 1436), st.sampled_from([-1, 0, 1437, 10 ** 6])),
         '--seed': mostly(st.integers(0, 2 ** 64), st.integers(-10, -1)),
         '--learning-rate-bounds': bounds(0, 1e3), '--weight-decay-bounds': bounds(0, 1e3),
         '--lr-scale': st.sampled_from(['linear', 'log']),
         '--method': st.sampled_from(['both', 'random', 'sobol,random', 'random,bayesian'])}


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(values=st.fixed_dictionaries(FLAGS))
def test_any_bounds_budgets_and_sizes_run_or_fail_with_one_line_and_exit_status_2(values):
    arguments = [text for flag, value in values.items() for text in (flag, *([value] if type(value) is str else value))]
    with tempfile.TemporaryDirectory() as folder:
        output = f'{folder}/results.csv'
        stdout, stderr = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                experiment.main(['--dataset', 'digits', '--device', 'cpu', *arguments, '--output', output])
        except SystemExit as exit:
            event('refused')
            assert exit.code == 2 and stderr.getvalue().count('\n') == 1 and ': error: ' in stderr.getvalue()
            assert os.listdir(folder) == []  # refused before anything was written
        else:
            event('ran')
            evaluations, repetitions = int(values['--evaluations']), int(values['--repetitions'])
            methods = 2 if values['--method'] == 'both' else len(values['--method'].split(','))
            assert len(read_rows(output)) == methods * repetitions * evaluations
            assert 'Table I:' in stdout.getvalue()


def test_bad_input_from_the_command_line_has_no_traceback(tmp_path):
    result = run_script('test.py', '--dataset', 'digits', '--learning-rate-bounds', '0.1', '0.01', cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ''
    assert result.stderr == 'test.py: error: --learning-rate-bounds 0.1 0.01: the bounds must satisfy 0 <= LOW < HIGH\n'


def test_a_missing_dataset_says_which_files_to_put_where(tmp_path, no_downloads, capsys):
    with pytest.raises(SystemExit) as exit:
        experiment.main(['--dataset', 'mnist', '--data-dir', str(tmp_path / 'data'),
                         '--output', str(tmp_path / 'results.csv')])
    stderr = capsys.readouterr().err
    assert exit.value.code == 1 and stderr.count('\n') == 1
    assert 'train-images-idx3-ubyte' in stderr and f'{tmp_path / "data"}/MNIST/raw/' in stderr


def test_help_lists_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        experiment.main(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    for flag, default in [('--dataset', 'cifar10'), ('--method', "('bayesian', 'sobol')"), ('--evaluations', '25'),
                          ('--init-points', '5'), ('--epochs', '50'), ('--repetitions', '10'),
                          ('--batch-size', '64'), ('--validation-size', 'None'), ('--seed', '0'),
                          ('--data-dir', 'data'), ('--output', 'results.csv'),
                          ('--learning-rate-bounds', '(0.0001, 0.1)'), ('--weight-decay-bounds', '(0, 0.001)'),
                          ('--population', 'None'), ('--lr-scale', 'linear')]:
        assert re.search(re.escape(flag) + r' .*?\(default: ' + re.escape(default) + r'\)', text), flag
