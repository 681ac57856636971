"""Benchmark tables (table.py, test.py --table): a finished grid run with curves answers every method's evaluations,
interpolated bilinearly in the searches' coordinates from the replica the network seed picks, at the row's epochs;
what it cannot answer is refused in one line; bench.py --fidelity measures how well it answers."""
import gzip
import json
import math
import os
import shutil

import numpy as np
import pytest
from conftest import TABLE_SETTINGS, read_rows, refused, run_script, snapshot, typed_rows
from scipy import interpolate, stats

import searches
import table
import test as experiment

EVERY_METHOD = ','.join(searches.METHODS)  # the seven and grid


def table_curves(path):
    """The table's curves read independently: {(replica, iteration): [[val_loss, val_accuracy, test_loss,
    test_accuracy] per epoch]}."""
    curves = {}
    for line in read_rows(path.with_suffix('.curves.csv')):
        curves.setdefault((int(line['repetition']), int(line['iteration'])), []).append(
            [float(line[name]) for name in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')])
    return curves


def table_read_independently(path, *, side=3, low=0.001, high=1.0, wd_high=0.001, replicas=2, epochs=3):
    """The table in `path` made from its curves file read here and the grid's axes from its bounds."""
    curves, values = table_curves(path), np.empty((replicas, side, side, epochs, 4))
    for (replica, iteration), curve in curves.items():
        values[(replica - 1, *divmod(iteration - 1, side))] = curve
    return table.Table([[float(x) for x in np.linspace(low, high, side)], [float(y) for y in np.linspace(0, wd_high,
                                                                                                       side)]],
                       values, log_learning_rate=False)


@pytest.fixture(scope='module')
def every_method_on_the_table(digits_table, tmp_path_factory):
    """Every method run on the table: (its results path, its rows)."""
    output = tmp_path_factory.mktemp('on-the-table') / 'results.csv'
    experiment.main([*TABLE_SETTINGS, '--method', EVERY_METHOD, '--evaluations', '9', '--init-points', '3',
                     '--repetitions', '3', '--table', str(digits_table), '--quiet', '--output', str(output)])
    return output, typed_rows(output)


def test_every_method_runs_on_a_table_each_row_answered_as_the_network_of_its_seed_point_and_epochs(
        digits_table, every_method_on_the_table):
    output, rows = every_method_on_the_table
    assert {row['method'] for row in rows} == set(searches.METHODS)
    answering = table_read_independently(digits_table)
    for row in rows:
        curve = answering.curve(row['learning_rate'], row['weight_decay'], row['seed'])
        found = [row[name] for name in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')]
        assert np.array_equal(found, curve[row['epochs'] - 1], equal_nan=True), row
        assert row['seconds'] == 0
    assert {row['epochs'] for row in rows if row['method'] == 'hyperband'} == {1, 3}  # rungs read the curves
    configuration = json.loads(output.with_suffix('').with_suffix('.config.json').read_text())
    assert configuration['table'] == str(digits_table) and configuration['devices'] == [f'the table {digits_table}']
    assert configuration['table_sha256'] == table.file_hash(digits_table, digits_table.with_suffix('.curves.csv'))
    assert configuration['table_answer'] == {'name': 'noise-keeping', 'pool': 32, 'margin': 1.0}


def test_at_a_grid_point_the_table_answers_that_networks_scores_exactly(digits_table, every_method_on_the_table):
    _, rows = every_method_on_the_table
    grid = {(row['repetition'], row['iteration']): row for row in typed_rows(digits_table)}
    answered = [row for row in rows if row['method'] == 'grid']
    assert len(answered) == 27
    for row in answered:
        trained = grid[row['seed'] % 2 + 1, row['iteration']]  # the replica the seed picks, the same point
        assert (row['learning_rate'], row['weight_decay']) == (trained['learning_rate'], trained['weight_decay'])
        assert [row[name] for name in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')] == [
            trained[name] for name in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')] or math.isnan(
            trained['val_loss'])


def synthetic_table(means, deviation, *, epochs=1, replicas=2, log_learning_rate=False, axes=None):
    """A table over the unit square whose replicas lie `deviation` above and below `means` (first coordinate x second)
    at every epoch and score, alternately by replica."""
    means = np.asarray(means, dtype=float)
    signs = np.array([1 if replica % 2 == 0 else -1 for replica in range(replicas)], dtype=float)
    curves = means[None, :, :, None, None] + deviation * signs[:, None, None, None, None] * np.ones(
        (replicas, *means.shape, epochs, 4))
    axes = axes or [[float(value) for value in np.linspace(0, 1, side)] for side in means.shape]
    return table.Table(axes, curves, log_learning_rate=log_learning_rate)


def answers(answering, x, y, seeds, epoch=-1):
    """The validation losses a table answers at (x, y) for these seeds, at an epoch."""
    return np.array([answering.curve(x, y, seed)[epoch, 0] for seed in seeds])


def test_between_grid_points_the_answers_mean_is_the_bilinear_interpolation_and_their_variance_one_networks():
    means = [[1.0, 3.0, 2.0], [5.0, 11.0, 4.0], [6.0, 7.0, 8.0]]  # at x = 0, 0.5, 1 (rows) and y = 0, 0.5, 1
    answering = synthetic_table(means, 0.1)
    found = answers(answering, 0.125, 0.375, range(4000))  # a quarter along x, three quarters along y
    expected = 0.75 * 0.25 * 1 + 0.75 * 0.75 * 3 + 0.25 * 0.25 * 5 + 0.25 * 0.75 * 11
    assert found.mean() == pytest.approx(expected, abs=0.01)
    # two replicas 0.2 apart: one network's variance is their sample variance, 0.02, whatever the point
    assert found.var() == pytest.approx(0.02, rel=0.1)
    assert set(np.round(found - expected, 12)) == {round(0.1 * math.sqrt(2), 12), -round(0.1 * math.sqrt(2), 12)}
    on_a_line = answers(answering, 0.25, 0.0, range(4000))  # between two grid points: one network's noise too
    assert on_a_line.mean() == pytest.approx(3.0, abs=0.01) and on_a_line.var() == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize('replicas', [2, 3])
def test_with_three_replicas_the_answers_noise_has_one_networks_skewness(replicas):
    """A replica's deviation from the mean of three keeps 0.41 of the noise's skewness (of two, none): with three
    replicas the table measures it and adds the rest back, keeping the noise's mean and variance (the answers'
    range around the grid points trims the long tail a little); with two it adds none."""
    side = 12
    noise = np.random.default_rng(0).gamma(4.0, 0.025, (replicas, side, side, 1, 4)) - 0.1  # skewness 1, std 0.05
    means = np.linspace(1, 2, side)[:, None] + np.zeros(side)
    answering = table.Table([list(np.linspace(0, 1, side))] * 2, means[None, :, :, None, None] + noise,
                            log_learning_rate=False)
    points = np.random.default_rng(1).uniform(0, 1, (4000, 2))
    found = (np.array([answering.curve(x, y, seed)[-1, 0] for seed, (x, y) in enumerate(points)])
             - interpolate.RegularGridInterpolator(answering.axes, answering.trained_means[:, :, -1, 0])(points))
    assert abs(found.mean()) < 0.003 and found.std() == pytest.approx(0.05, rel=0.1)
    deviations = answering.deviations[..., -1, 0].ravel()
    if replicas == 2:
        assert abs(stats.skew(found)) < 0.1 and answering.answer_rule == table.ANSWER_RULE
    else:
        assert stats.skew(deviations) < 0.5 < 0.6 < stats.skew(found) < stats.skew(noise[..., 0, 0].ravel())
        assert answering.answer_rule == {**table.ANSWER_RULE, 'skew_clip': table.SKEW_CLIP}


def test_at_a_grid_point_the_answer_is_the_replica_the_seed_picks():
    curves = np.stack([np.full((2, 2, 1, 4), value) for value in (0.1, 0.2, 0.3)])
    answering = table.Table([[0.0, 1.0], [0.0, 1.0]], curves, log_learning_rate=False)
    assert [answering.curve(1.0, 0.0, seed)[0, 0] for seed in (0, 1, 2, 3, 901243215)] == [
        0.1, 0.2, 0.3, 0.1, [0.1, 0.2, 0.3][901243215 % 3]]


def test_an_answer_is_one_network_the_same_for_its_seed_and_point_at_every_epoch_and_with_its_scores_together():
    rng = np.random.default_rng(0)
    curves = rng.uniform(0.2, 0.8, (2, 4, 4, 5, 4))  # replicas that disagree everywhere, differently per epoch
    answering = table.Table([list(np.linspace(0, 1, 4))] * 2, curves, log_learning_rate=False)
    first = answering.curve(0.4, 0.7, 123)
    assert np.array_equal(first, answering.curve(0.4, 0.7, 123))  # the same network, whatever asks it
    assert not np.array_equal(first, answering.curve(0.4, 0.7, 124))  # another network
    row = {'learning_rate': 0.4, 'weight_decay': 0.7, 'seed': 123, 'epochs': 5}
    continued = answering.scores(row, curve_from=2)  # a network continued from 2 epochs reads its own curve
    assert continued['curve'] == first[2:5].tolist() and continued['val_loss'] == first[4, 0]
    assert answering.scores({**row, 'epochs': 3})['val_loss'] == first[2, 0]
    # its noise is one donor's replica deviation over the whole curve and every score, where nothing is clipped
    means, deviations = curves.mean(axis=0), (curves - curves.mean(axis=0)) * math.sqrt(2)
    weights = {(1, 2): (1 - 0.2) * (1 - 0.1), (1, 3): (1 - 0.2) * 0.1, (2, 2): 0.2 * (1 - 0.1), (2, 3): 0.2 * 0.1}
    expected = sum(weight * means[corner] for corner, weight in weights.items())
    noise = first - expected
    assert any(np.allclose(noise, deviations[replica, i, j]) for replica in range(2) for i in range(4)
               for j in range(4) if (i, j) not in weights)


def test_answers_stay_within_the_replicas_range_around_them_widened_by_the_margin_and_valid():
    means = np.full((5, 5), 0.5)
    means[0, :] = 1.2  # a steep edge: there one replica learned (0.1) and the other not (2.3)
    curves = np.stack([means, means]).astype(float)[..., None, None] * np.ones((2, 5, 5, 1, 4))
    curves[0, 0, :] = 0.1
    curves[1, 0, :] = 2.3
    curves[:, 1:] += np.array([0.01, -0.01])[:, None, None, None, None]  # elsewhere the replicas agree closely
    curves[..., 1::2] = np.clip(curves[..., 1::2], 0, 1)  # accuracies
    answering = table.Table([list(np.linspace(0, 1, 5))] * 2, curves, log_learning_rate=False)
    margin = table.NOISE_MARGIN * answering.spread[0, 0]
    assert margin == pytest.approx(1.4826 * 0.01 * math.sqrt(2))
    near_the_edge = answers(answering, 0.2, 0.4, range(2000))  # between the edge and a row where they agree
    assert near_the_edge.min() >= 0.1 - margin and near_the_edge.max() <= 2.3 + margin
    away = answers(answering, 0.6, 0.4, range(2000))  # drawn from the agreeing points, not the edge's
    assert away.min() >= 0.49 - margin and away.max() <= 0.51 + margin
    everything = np.array([answering.curve(x, y, seed) for x, y, seed in zip(*np.random.default_rng(1).uniform(
        0, 1, (2, 500)), range(500))])
    assert (everything[..., 0::2] >= 0).all() and ((everything[..., 1::2] >= 0) & (everything[..., 1::2] <= 1)).all()


def test_a_point_near_a_diverged_network_diverges_with_the_share_of_replicas_that_did_there():
    curves = np.full((2, 2, 2, 3, 4), 0.5)
    curves[:, :, :, :, 0] += np.array([0.01, -0.01])[:, None, None, None]
    curves[0, 1, 1, 1:, 0] = math.nan  # replica 1 at (1, 1) diverged in its second epoch
    answering = table.Table([[0.0, 1.0], [0.0, 1.0]], curves, log_learning_rate=False)
    found = np.array([answering.curve(0.5, 0.8, seed) for seed in range(4000)])
    diverged = np.isnan(found[:, -1, 0])
    assert diverged.mean() == pytest.approx(0.5 * 0.8 * 0.5, abs=0.02)  # that corner's weight, half its replicas
    assert np.array_equal(found[diverged][0], curves[0, 1, 1], equal_nan=True)  # the diverged replica's curve
    assert np.isfinite(found[~diverged]).all()  # the others from the replicas that trained
    assert math.isnan(answering.curve(1.0, 1.0, 0)[-1, 0]) and answering.curve(1.0, 1.0, 1)[-1, 0] == 0.49


def test_a_table_needs_two_replicas_to_measure_the_training_noise():
    with pytest.raises(table.TableError, match='a table needs two replicas or more to measure the training noise, '
                                               'it has 1'):
        table.Table([[0.0, 1.0], [0.0, 1.0]], np.zeros((1, 2, 2, 1, 4)), log_learning_rate=False)


def test_a_log_scale_table_interpolates_in_log10_of_the_learning_rate():
    answering = synthetic_table([[0.0, 0.0], [1.0, 1.0]], 0.0, axes=[[-4.0, -1.0], [0.0, 1.0]],
                                log_learning_rate=True)
    assert answering.curve(0.001, 0.5, 0)[0, 0] == pytest.approx(1 / 3)


def test_along_a_log_scaled_learning_rate_the_expectation_follows_the_valleys_curve():
    """On a log-scaled box the expected scores between grid points follow modified Akima splines through the grid
    points' means along the learning rate, linearly along the weight decay: on a parabola's valley they lie below the
    chords bilinear interpolation would answer. A linear box keeps the bilinear rule, and so does a line of weight
    decay with a grid point where every replica diverged."""
    log_rates = np.linspace(-4.0, 0.0, 9)
    means = 0.5 + 0.2 * (log_rates[:, None] + 1.7) ** 2 + np.array([0.0, 0.1, 0.05])  # x 3 weight decays
    axes = [list(log_rates), [0.0, 0.0005, 0.001]]
    curved = synthetic_table(means, 0.0, axes=axes, log_learning_rate=True)
    straight = synthetic_table(means, 0.0, axes=axes)
    splines = [interpolate.Akima1DInterpolator(log_rates, means[:, line], method='makima') for line in range(3)]
    for log_rate, weight_decay in ((-1.75, 0.0001), (-2.2, 0.0004), (-0.25, 0.00025)):
        along = 0.8 * splines[0](log_rate) + 0.2 * splines[1](log_rate) if weight_decay == 0.0001 else None
        found = curved.expected(10 ** log_rate, weight_decay)[-1, 0]
        truth = 0.5 + 0.2 * (log_rate + 1.7) ** 2 + 0.1 * weight_decay / 0.0005
        chord = straight.expected(log_rate, weight_decay)[-1, 0]
        assert 0 < chord - truth and abs(found - truth) < 0.5 * (chord - truth)
        if along is not None:
            assert found == pytest.approx(along, abs=1e-12)
    assert curved.answer_rule == {**table.ANSWER_RULE, 'along_log_learning_rate': 'makima'}
    assert straight.answer_rule == table.ANSWER_RULE
    diverged = np.where(np.arange(9)[:, None] == 8, [math.nan, 0.0, 0.0], 0.0)  # every replica at lr 1, wd 0
    broken = synthetic_table(means + diverged, 0.0, axes=axes, log_learning_rate=True)
    broken_chord = synthetic_table(means + diverged, 0.0, axes=axes)
    assert broken.expected(10 ** -1.75, 0.0001)[-1, 0] == broken_chord.expected(-1.75, 0.0001)[-1, 0]
    assert broken.expected(10 ** -1.75, 0.0008)[-1, 0] == pytest.approx(
        0.4 * splines[1](-1.75) + 0.6 * splines[2](-1.75), abs=1e-12)  # the lines without the diverged grid point


def test_evaluate_answers_any_optimiser_as_a_run_on_the_table_does_and_refuses_what_it_cannot_answer():
    curves = np.random.default_rng(1).uniform(0.2, 0.8, (2, 3, 3, 5, 4))
    answering = table.Table([[-4.0, -2.0, 0.0], [0.0, 0.5, 1.0]], curves, log_learning_rate=True)
    row = {'learning_rate': 0.003, 'weight_decay': 0.2, 'seed': 7, 'epochs': 4}
    expected = {name: value for name, value in answering.scores(row).items() if name != 'seconds'}
    assert answering.evaluate(0.003, 0.2, 4, seed=7) == expected
    assert answering.evaluate(0.003, 0.2, 4, seed=7)['val_loss'] == answering.curve(0.003, 0.2, 7)[3, 0]
    assert answering.evaluate(0.01, 0.5, 5) == dict(zip(table.SCORES, curves[0, 1, 1, 4]))  # a grid point
    for epochs in (0, 6, 2.5):
        with pytest.raises(table.TableError, match=f"epochs {epochs} is not a whole number from 1 to the table's 5"):
            answering.evaluate(0.003, 0.2, epochs)
    with pytest.raises(table.TableError, match="the point 0.3010.* is outside the table's range -4.0 to 0.0"):
        answering.evaluate(2.0, 0.2, 4)


def test_a_point_outside_the_tables_box_is_refused():
    answering = synthetic_table([[0.0, 0.0], [1.0, 1.0]], 0.1)
    with pytest.raises(table.TableError, match="the point 1.5 is outside the table's range 0.0 to 1.0"):
        answering.curve(1.5, 0.5, 0)


@pytest.mark.parametrize('arguments, named', [
    (['--epochs', '2'], 'was built with epochs 3, this run has 2'),
    (['--training-size', '200'], 'was built with training_size 300, this run has 200'),
    (['--batch-size', '32'], 'was built with batch_size 64, this run has 32'),
    (['--learning-rate-bounds', '0.001', '0.5'], 'was built with learning_rate_bounds [0.001, 1.0], this run has '
                                                 '[0.001, 0.5]'),
    (['--lr-scale', 'log'], "was built with lr_scale 'linear', this run has 'log'"),
    (['--ray', 'local'], '--ray local has nothing to train with --table'),
    (['--dataset', 'mnist'], "was built with dataset 'digits', this run has 'mnist'"),
    (['--validation-size', '300'], 'was built with validation_size 360, this run has 300'),
    (['--weight-decay-bounds', '0', '0.01'], 'was built with weight_decay_bounds [0.0, 0.001], this run has '
                                             '[0.0, 0.01]'),
])
def test_a_run_that_is_not_the_tables_is_refused_in_one_line_naming_the_first_difference(
        arguments, named, digits_table, tmp_path, capsys):
    run = [*TABLE_SETTINGS, '--method', 'random', '--evaluations', '4', '--repetitions', '1']
    stderr = refused(experiment.main, [*run, *arguments, '--table', str(digits_table),
                                       '--output', str(tmp_path / 'results.csv')], capsys)
    assert named in stderr and list(tmp_path.iterdir()) == []


def without_curves(source, folder):
    """A copy of a table's CSV and configuration, without its curves file."""
    for suffix in ('.csv', '.config.json'):
        shutil.copy(source.with_suffix('').with_suffix(suffix), folder / f'grid{suffix}')
    return folder / 'grid.csv'


def nan_in_a_curve(path):
    """A NaN put into the table's curves where its CSV has a finite loss (grid repetition 1 iteration 2's epoch 2)."""
    curves = path.with_suffix('.curves.csv')
    lines = curves.read_text().splitlines(keepends=True)
    number = next(number for number, line in enumerate(lines) if line.startswith('grid,1,2,2,'))
    lines[number] = 'grid,1,2,2,nan,' + lines[number].split(',', 5)[5]
    curves.write_text(''.join(lines))


def another_last_epoch(path):
    """The curve of grid repetition 2 iteration 9 ending in another test accuracy than its row's."""
    curves = path.with_suffix('.curves.csv')
    *lines, last = curves.read_text().splitlines(keepends=True)
    curves.write_text(''.join(lines) + last.rsplit(',', 1)[0] + ',0.0001\n')


def gzipped_too(path):
    """The curves gzipped beside the plain ones, their content changed."""
    with gzip.open(path.with_suffix('.curves.csv.gz'), 'wt') as file:
        file.write(path.with_suffix('.curves.csv').read_text().replace('grid,1,1,1,', 'grid,1,1,1,9'))


def cut_gzip(path):
    """The curves gzipped and cut short."""
    data = gzip.compress(path.with_suffix('.curves.csv').read_bytes())
    path.with_suffix('.curves.csv').unlink()
    path.with_suffix('.curves.csv.gz').write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize('damage, named', [
    (lambda path: path.with_suffix('.curves.csv').unlink(), 'grid.curves.csv (or .gz) is missing'),
    (lambda path: path.write_text(''.join(path.read_text().splitlines(keepends=True)[:10])),
     'is not finished: it records 9 of its 18 grid evaluations'),
    (nan_in_a_curve, 'grid.curves.csv: the curve of grid repetition 1 iteration 2 ends in'),
    (another_last_epoch, 'grid.curves.csv: the curve of grid repetition 2 iteration 9 ends in'),
    (gzipped_too, 'grid.curves.csv and its .gz are both there: a table has one curves file'),
    (cut_gzip, 'grid.curves.csv.gz cannot be read (Compressed file ended'),
    (lambda path: path.unlink(), 'grid.csv is not a table: there is no such file'),
    (lambda path: (path.unlink(), path.mkdir()), 'grid.csv is not a table: a folder'),
], ids=['no curves', 'unfinished', 'a NaN in a curve', 'another last epoch', 'plain and gzipped', 'a cut .gz',
        'no file', 'a folder'])
def test_a_table_is_checked_whole_and_what_is_wrong_is_refused_naming_its_file(damage, named, digits_table, tmp_path,
                                                                               capsys):
    path = without_curves(digits_table, tmp_path)
    shutil.copy(digits_table.with_suffix('.curves.csv'), tmp_path / 'grid.curves.csv')
    damage(path)
    stderr = refused(experiment.main, [*TABLE_SETTINGS, '--method', 'random', '--evaluations', '4', '--table',
                                       str(path), '--output', str(tmp_path / 'results.csv')], capsys)
    assert named in stderr and not (tmp_path / 'results.csv').exists()


def test_a_run_that_is_no_grid_with_curves_is_no_table(tmp_path, capsys):
    experiment.main([*TABLE_SETTINGS, '--method', 'random', '--evaluations', '4', '--repetitions', '1', '--quiet',
                     '--output', str(tmp_path / 'random.csv')])
    before = snapshot(tmp_path)
    stderr = refused(experiment.main, [*TABLE_SETTINGS, '--method', 'sobol', '--evaluations', '4', '--table',
                                       str(tmp_path / 'random.csv'), '--output', str(tmp_path / 'results.csv')],
                     capsys)
    assert ('random.csv is no table: a table is a run of method grid with --curves that trained its networks (its '
            'methods are random, curves False, table None)') in stderr
    assert snapshot(tmp_path) == before


def test_a_table_run_resumes_to_the_same_file_and_is_refused_once_its_table_changed(
        digits_table, every_method_on_the_table, tmp_path, capsys):
    output, _ = every_method_on_the_table
    copy = tmp_path / 'results.csv'
    copy.write_text(''.join(output.read_text().splitlines(keepends=True)[:40]))
    shutil.copy(output.with_suffix('').with_suffix('.config.json'), tmp_path / 'results.config.json')
    arguments = [*TABLE_SETTINGS, '--method', EVERY_METHOD, '--evaluations', '9', '--init-points', '3',
                 '--repetitions', '3', '--quiet', '--table', str(digits_table), '--output', str(copy)]
    experiment.main(arguments)
    assert read_rows(copy) == read_rows(output)  # every column: a table's seconds are 0
    own = without_curves(digits_table, tmp_path)
    curves = digits_table.with_suffix('.curves.csv').read_text()
    (tmp_path / 'grid.curves.csv').write_text(curves)
    run = [*TABLE_SETTINGS, '--method', 'random', '--evaluations', '4', '--repetitions', '1', '--quiet', '--table',
           str(own), '--output', str(tmp_path / 'small.csv')]
    experiment.main(run)
    header, first, *lines = curves.splitlines(keepends=True)
    fields = first.rstrip('\n').split(',')
    fields[-1] = '0.25' if fields[-1] != '0.25' else '0.5'  # the first network's test accuracy after its first epoch
    (tmp_path / 'grid.curves.csv').write_text(header + ','.join(fields) + '\n' + ''.join(lines))
    stderr = refused(experiment.main, run, capsys)
    assert "was made with another configuration (table_sha256 '" in stderr


def test_a_table_run_made_under_another_answer_rule_is_not_resumed_and_still_reports(
        digits_table, every_method_on_the_table, tmp_path, capsys):
    output, _ = every_method_on_the_table
    copy = tmp_path / 'results.csv'
    copy.write_text(''.join(output.read_text().splitlines(keepends=True)[:40]))
    configuration = json.loads(output.with_suffix('').with_suffix('.config.json').read_text())
    del configuration['table_answer']  # as a run answered by interpolation alone, before the rule, saved it
    (tmp_path / 'results.config.json').write_text(json.dumps(configuration))
    before = snapshot(tmp_path)
    stderr = refused(experiment.main, [*TABLE_SETTINGS, '--method', EVERY_METHOD, '--evaluations', '9',
                                       '--init-points', '3', '--repetitions', '3', '--quiet', '--table',
                                       str(digits_table), '--output', str(copy)], capsys)
    assert "was made with another configuration (table_answer None (now {'name': 'noise-keeping'" in stderr
    assert snapshot(tmp_path) == before
    experiment.main(['--report', str(copy), '--quiet'])
    assert 'Table I' in capsys.readouterr().out


def test_fidelity_trains_random_points_for_real_and_sets_the_tables_answers_beside_its_replicas(digits_table):
    result = run_script('bench.py', '--fidelity', str(digits_table), '--points', '6', '--device', 'cpu', '--json',
                        cwd=digits_table.parent)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures['points'] == 6 and figures['table_vs_real']['pairs'] + figures['table_vs_real'][
        'one_diverged'] <= 6
    assert figures['replica_vs_replica']['pairs'] + figures['replica_vs_replica']['one_diverged'] <= 9
    grid = typed_rows(digits_table)
    first = {row['iteration']: row['val_loss'] for row in grid if row['repetition'] == 1}
    second = {row['iteration']: row['val_loss'] for row in grid if row['repetition'] == 2}
    finite = [(first[i], second[i]) for i in first if math.isfinite(first[i]) and math.isfinite(second[i])]
    assert figures['replica_vs_replica']['pairs'] == len(finite)
    assert figures['replica_vs_replica']['rmse'] == pytest.approx(
        math.sqrt(sum((a - b) ** 2 for a, b in finite) / len(finite)))
    assert 'table vs real training (random points)' in result.stdout


def test_noise_measures_the_replicas_deviations_and_sets_real_rows_against_the_answers_at_their_points(
        digits_table, pretend_training, tmp_path, capsys):
    import bench
    real = tmp_path / 'real.csv'
    experiment.main([*TABLE_SETTINGS, '--method', 'sobol,random', '--evaluations', '4', '--repetitions', '2',
                     '--quiet', '--output', str(real)])
    capsys.readouterr()
    bench.main(['--noise', str(digits_table), '--real', str(real), '--points', '3'])
    printed = capsys.readouterr().out
    grid = typed_rows(digits_table)
    pairs = [[row['val_loss'] for row in grid if row['iteration'] == iteration] for iteration in range(1, 10)]
    deviations = np.abs(np.subtract(*np.array(pairs).T)) / math.sqrt(2)  # each replica's, scaled to one network's
    assert (f'all 9 {1.4826 * np.median(deviations):.4f} {np.sqrt(np.mean(deviations ** 2)):.4f} '
            in ' '.join(printed.split()))
    answering, rows = table.load(str(digits_table)), typed_rows(real)
    for method in ('sobol', 'random'):
        bests = [[min(values) for values in ([row['val_loss'] for row in rows if (row['method'], row['repetition'])
                                              == (method, repetition)],
                                             [answering.scores(row)['val_loss'] for row in rows
                                              if (row['method'], row['repetition']) == (method, repetition)])]
                 for repetition in (1, 2)]
        real_mean, table_mean = np.mean(bests, axis=0)
        # and over the noise streams: the rows' seeds moved, each stream a search's best, averaged
        streams = [[min(answering.scores({**row, 'seed': row['seed'] + stream * bench.NOISE_STREAM_STRIDE})['val_loss']
                        for row in rows if (row['method'], row['repetition']) == (method, repetition))
                    for stream in range(bench.NOISE_STREAMS)] for repetition in (1, 2)]
        differences = np.mean(streams, axis=1) - np.array(bests)[:, 0]
        assert (f'{method} 2 {real_mean:.4f} {table_mean:.4f} {table_mean - real_mean:+.4f} '
                f'{differences.mean():+.4f} {np.std(differences, ddof=1) / math.sqrt(2):.4f}'
                in ' '.join(printed.split()))
        assert len({round(value, 6) for value in np.ravel(streams)}) > 2  # the streams answer differently
        searches = [[row for row in rows if (row['method'], row['repetition']) == (method, repetition)]
                    for repetition in (1, 2)]
        constructed = bench.rule_by_construction(answering, searches)
        error = np.std(constructed, ddof=1) / math.sqrt(len(constructed))
        assert f'{method} 2 {np.mean(constructed):+.4f} {error:.4f}' in ' '.join(printed.split())


def test_the_rule_by_construction_is_exact_without_noise_and_measures_what_a_rule_gains(monkeypatch):
    import bench
    means = [[1.0, 3.0, 2.0], [5.0, 11.0, 4.0], [6.0, 7.0, 8.0]]
    searches = [[{'learning_rate': x, 'weight_decay': y, 'epochs': 1, 'seed': seed}
                 for x, y in ((0.125, 0.375), (0.5, 0.5), (0.9, 0.2))] for seed in (3, 4)]
    # no noise: a synthetic table's answers are its truth, as real networks are
    assert bench.rule_by_construction(synthetic_table(means, 0.0), searches) == [0.0] * (2 * bench.SYNTHETIC_TABLES)
    answer = table.Table.curve
    monkeypatch.setattr(table.Table, 'curve', lambda self, *point: answer(self, *point) - 0.25)  # a rule that gains
    assert bench.rule_by_construction(synthetic_table(means, 0.0), searches) == pytest.approx(
        [-0.25] * (2 * bench.SYNTHETIC_TABLES))
    monkeypatch.undo()
    # with noise, each synthetic table a new draw, the same on every call
    noisy = bench.rule_by_construction(synthetic_table(means, 0.1), searches)
    assert noisy == bench.rule_by_construction(synthetic_table(means, 0.1), searches) and len(set(noisy)) > 2


def test_a_report_across_table_runs_measures_regret_from_the_tables_lowest_loss_while_it_is_as_it_was(
        digits_table, tmp_path, capsys):
    own = without_curves(digits_table, tmp_path)
    curves = digits_table.with_suffix('.curves.csv').read_text()
    (tmp_path / 'grid.curves.csv').write_text(curves)
    for seed in (0, 1):
        experiment.main([*TABLE_SETTINGS, '--method', 'random,sobol,grid,hyperband', '--evaluations', '9',
                         '--repetitions', '3', '--seed', str(seed), '--table', str(own), '--quiet',
                         '--output', str(tmp_path / f'seed-{seed}.csv')])
    capsys.readouterr()
    report = ['--report', str(tmp_path / 'seed-0.csv'), str(tmp_path / 'seed-1.csv')]
    experiment.main(report)
    lowest = min(row['val_loss'] for row in typed_rows(digits_table) if math.isfinite(row['val_loss']))
    task = json.loads((tmp_path / 'seed-0.across.json').read_text())['tasks']['seed-0']
    assert (task['best'], task['best_from']) == (lowest, "the table's lowest loss")
    assert set(json.loads((tmp_path / 'seed-0.across.json').read_text())['ranks']['9']['mean_rank']) == {
        'random', 'sobol', 'grid', 'hyperband'}  # Hyperband at the same model-epochs
    (tmp_path / 'grid.curves.csv').write_text(curves.replace('\n', '\n', 1)[:-1] + '\n\n')  # changed: not as it was
    capsys.readouterr()
    experiment.main(report)
    task = json.loads((tmp_path / 'seed-0.across.json').read_text())['tasks']['seed-0']
    assert task['best_from'] == 'the lowest loss any method found'
    assert f'its table {own} is not there as it was' in capsys.readouterr().out


def test_a_table_run_is_checked_against_real_training_of_the_same_searches(every_method_on_the_table,
                                                                           pretend_training, tmp_path, capsys):
    on_table, table_rows = every_method_on_the_table
    real = tmp_path / 'real.csv'
    experiment.main([*TABLE_SETTINGS, '--method', 'sobol,random,grid,tpe', '--evaluations', '9', '--init-points', '3',
                     '--repetitions', '2', '--quiet', '--output', str(real)])
    real_rows = typed_rows(real)
    capsys.readouterr()
    experiment.main(['--report', str(on_table), '--against', str(real)])
    printed = capsys.readouterr().out
    methods = ('sobol', 'random', 'grid', 'tpe')
    written = on_table.with_suffix('.against.md').read_text()
    for after in (5, 9):  # the report's checkpoint within the budget, and the budget
        means, deviations, intervals = {}, {}, {}
        for name, rows in (('table', table_rows), ('real', real_rows)):
            for method in methods:  # the repetitions both finished: 1 and 2
                bests = [min(searches.finite_or_inf(row['val_loss']) for row in rows
                             if (row['method'], row['repetition']) == (method, repetition)
                             and row['iteration'] <= after) for repetition in (1, 2)]
                means[name, method] = np.mean(bests)
                deviations[name, method] = np.std(bests, ddof=1)
                intervals[name, method] = (min(bests), max(bests))  # the bootstrap means of two values span them
        table_ranks = stats.rankdata([means['table', method] for method in methods])
        real_ranks = stats.rankdata([means['real', method] for method in methods])
        for method, table_rank, real_rank in zip(methods, table_ranks, real_ranks):
            line = next(line for line in written.splitlines() if line.startswith(f'| {method} | {after} |'))
            cells = [cell.strip() for cell in line.strip('|').split('|')]
            assert cells[2] == '2'
            for cell, name in ((cells[3], 'table'), (cells[4], 'real')):
                assert cell == (f'{means[name, method]:.4f} [{intervals[name, method][0]:.4f}, '
                                f'{intervals[name, method][1]:.4f}]')
            assert float(cells[5]) == pytest.approx(deviations['table', method], abs=5e-5)
            assert float(cells[6]) == pytest.approx(deviations['real', method], abs=5e-5)
            assert (float(cells[8]), float(cells[9]), cells[10]) == (table_rank, real_rank, 'too few repetitions')
    spearman = stats.spearmanr(table_ranks, real_ranks).statistic  # after the budget, the last checkpoint
    bias = np.mean([means['table', method] - means['real', method] for method in methods])
    ratio = math.sqrt(np.mean([deviations['table', method] ** 2 for method in methods])
                      / np.mean([deviations['real', method] ** 2 for method in methods]))
    for text in (printed, written):
        assert 'Over the methods, after the budget of 9 evaluations:' in text
        assert f"Spearman's correlation between the methods' means: {spearman:.2f}" in text
        assert f"Pooled bias (the table's mean minus real training's, averaged over the methods): {bias:+.4f}" in text
        assert f"Spread ratio (the table's pooled standard deviation over real training's): {ratio:.2f}" in text


@pytest.mark.parametrize('arguments, named', [
    (lambda table_run, real: ['--against', str(real)], '--against {real} needs --report with one file'),
    (lambda table_run, real: ['--report', str(real), '--against', str(table_run)],
     '--against: {real} must be a run on a table and {table_run} runs without'),
])
def test_a_check_against_real_training_needs_a_table_run_and_a_real_one(arguments, named, every_method_on_the_table,
                                                                        pretend_training, tmp_path, capsys):
    table_run = every_method_on_the_table[0]
    real = tmp_path / 'real.csv'
    experiment.main([*TABLE_SETTINGS, '--method', 'sobol', '--evaluations', '9', '--quiet', '--output', str(real)])
    before = snapshot(tmp_path)
    assert named.format(real=real, table_run=table_run) in refused(experiment.main, arguments(table_run, real), capsys)
    assert snapshot(tmp_path) == before


def test_a_table_run_finds_its_table_from_its_own_folder_and_resumes_under_any_spelling_of_it(
        digits_table, tmp_path, monkeypatch, capsys):
    (tmp_path / 'study' / 'tables').mkdir(parents=True)
    own = without_curves(digits_table, tmp_path / 'study' / 'tables')
    shutil.copy(digits_table.with_suffix('.curves.csv'), own.with_suffix('.curves.csv'))
    monkeypatch.chdir(tmp_path / 'study')
    run = [*TABLE_SETTINGS, '--method', 'random,sobol', '--evaluations', '9', '--repetitions', '3', '--quiet',
           '--output', 'on-the-table.csv']
    experiment.main([*run, '--table', 'tables/grid.csv'])
    written = (tmp_path / 'study' / 'on-the-table.csv').read_text()
    experiment.main([*run, '--table', str(own)])  # the same table by another spelling: the run is finished
    experiment.main([*run, '--table', './tables/../tables/grid.csv'])
    assert (tmp_path / 'study' / 'on-the-table.csv').read_text() == written
    configuration = json.loads((tmp_path / 'study' / 'on-the-table.config.json').read_text())
    assert (configuration['table'], configuration['table_relative']) == (str(own), 'tables/grid.csv')
    monkeypatch.chdir(tmp_path)  # elsewhere, and with the table moved: found from the results file's folder
    os.rename(tmp_path / 'study', tmp_path / 'moved')
    capsys.readouterr()
    experiment.main(['--report', 'moved/on-the-table.csv', '--across', 'moved/across.csv'])
    task = json.loads((tmp_path / 'moved' / 'across.across.json').read_text())['tasks']['on-the-table']
    assert task['best_from'] == "the table's lowest loss" and 'is not there as it was' not in capsys.readouterr().out


@pytest.mark.parametrize('other, named', [
    (['--seed', '1'], 'real has seed 1, results 0: a check against real training compares runs of the same settings'),
    (['--training-size', '200'], 'real has training_size 200, results 300'),
    (['--method', 'sobol,hyperband', '--epochs', '3'], None),
], ids=['another seed', 'another size', 'fine'])
def test_a_check_against_real_training_compares_only_runs_of_the_same_settings(other, named, every_method_on_the_table,
                                                                              pretend_training, tmp_path, capsys):
    real = tmp_path / 'real.csv'
    experiment.main([*TABLE_SETTINGS, '--method', 'sobol', '--evaluations', '9', '--init-points', '3', '--repetitions',
                     '3', *other, '--quiet', '--output', str(real)])
    arguments = ['--report', str(every_method_on_the_table[0]), '--against', str(real)]
    if named:
        assert named in refused(experiment.main, arguments, capsys)
    else:
        experiment.main(arguments)
        assert '| hyperband | 9 | 3 |' in every_method_on_the_table[0].with_suffix('.against.md').read_text()


def test_real_training_of_several_files_is_checked_method_by_method_each_method_once(every_method_on_the_table,
                                                                                      pretend_training, tmp_path,
                                                                                      capsys):
    files = {}
    for name, methods in (('first', 'sobol,random'), ('second', 'tpe'), ('again', 'random')):
        files[name] = tmp_path / f'{name}.csv'
        experiment.main([*TABLE_SETTINGS, '--method', methods, '--evaluations', '9', '--init-points', '3',
                         '--repetitions', '3', '--quiet', '--output', str(files[name])])
    table_run = every_method_on_the_table[0]
    experiment.main(['--report', str(table_run), '--against', str(files['first']), str(files['second'])])
    written = table_run.with_suffix('.against.md').read_text()
    assert [line.split('|')[1].strip() for line in written.splitlines() if line.startswith('| ') and
            line.split('|')[1].strip() in searches.METHODS] == ['sobol', 'random', 'tpe'] * 2  # after 5 and 9
    assert 'first and again both ran random' in refused(
        experiment.main, ['--report', str(table_run), '--against', str(files['first']), str(files['again'])], capsys)
