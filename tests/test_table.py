"""Benchmark tables (table.py, test.py --table): a finished grid run with curves answers every method's evaluations,
interpolated bilinearly in the searches' coordinates from the replica the network seed picks, at the row's epochs;
what it cannot answer is refused in one line; bench.py --fidelity measures how well it answers."""
import json
import math
import shutil

import numpy as np
import pytest
from conftest import TABLE_SETTINGS, read_rows, refused, run_script, snapshot, typed_rows
from scipy import stats

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


def expected_scores(row, curves, *, side=3, low=0.001, high=1.0, wd_high=0.001, replicas=2):
    """Bilinear interpolation written out: the grid's axes from their bounds, the four neighbours' scores at the row's
    epochs, weighted by the distances along each axis."""
    x, y = row['learning_rate'], row['weight_decay']
    xs, ys = np.linspace(low, high, side), np.linspace(0, wd_high, side)
    i, j = min(int(np.searchsorted(xs, x, side='right')) - 1, side - 2), min(
        int(np.searchsorted(ys, y, side='right')) - 1, side - 2)
    tx, ty = (x - xs[i]) / (xs[i + 1] - xs[i]), (y - ys[j]) / (ys[j + 1] - ys[j])
    replica = row['seed'] % replicas + 1

    def at(a, b):
        return np.array(curves[replica, a * side + b + 1][row['epochs'] - 1])
    corners = [((1 - tx) * (1 - ty), i, j), ((1 - tx) * ty, i, j + 1), (tx * (1 - ty), i + 1, j),
               (tx * ty, i + 1, j + 1)]
    return sum(weight * at(a, b) for weight, a, b in corners if weight)


@pytest.fixture(scope='module')
def every_method_on_the_table(digits_table, tmp_path_factory):
    """Every method run on the table: (its results path, its rows)."""
    output = tmp_path_factory.mktemp('on-the-table') / 'results.csv'
    experiment.main([*TABLE_SETTINGS, '--method', EVERY_METHOD, '--evaluations', '9', '--init-points', '3',
                     '--repetitions', '3', '--table', str(digits_table), '--quiet', '--output', str(output)])
    return output, typed_rows(output)


def test_every_method_runs_on_a_table_its_rows_interpolated_from_the_replica_its_seed_picks(
        digits_table, every_method_on_the_table):
    output, rows = every_method_on_the_table
    assert {row['method'] for row in rows} == set(searches.METHODS)
    curves = table_curves(digits_table)
    for row in rows:
        expected = expected_scores(row, curves)
        found = [row[name] for name in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')]
        assert np.allclose(found, expected, rtol=1e-12, atol=0, equal_nan=True), row
        assert row['seconds'] == 0
    assert {row['epochs'] for row in rows if row['method'] == 'hyperband'} == {1, 3}  # rungs read the curves
    configuration = json.loads(output.with_suffix('').with_suffix('.config.json').read_text())
    assert configuration['table'] == str(digits_table) and configuration['devices'] == [f'the table {digits_table}']
    assert configuration['table_sha256'] == table.file_hash(digits_table, digits_table.with_suffix('.curves.csv'))


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


def test_between_grid_points_the_answer_is_linear_along_each_axis():
    curves = np.zeros((1, 2, 2, 1, 4))
    curves[0, :, :, 0, 0] = [[1.0, 3.0], [5.0, 11.0]]  # val_loss at (x0, y0), (x0, y1), (x1, y0), (x1, y1)
    answers = table.Table([[0.0, 1.0], [0.0, 2.0]], curves, log_learning_rate=False)

    def loss(x, y):
        return answers.scores({'learning_rate': x, 'weight_decay': y, 'seed': 7, 'epochs': 1})['val_loss']
    assert loss(0.0, 0.0) == 1.0 and loss(1.0, 2.0) == 11.0
    assert loss(0.5, 0.0) == 3.0 and loss(0.0, 1.0) == 2.0  # half way along one axis
    assert loss(0.25, 1.5) == pytest.approx(0.75 * 0.25 * 1 + 0.75 * 0.75 * 3 + 0.25 * 0.25 * 5 + 0.25 * 0.75 * 11)
    curves[0, 1, 1, 0, 0] = math.nan  # a diverged corner spoils only the points it weighs on
    assert loss(0.0, 2.0) == 3.0 and math.isnan(loss(0.5, 1.0))


def test_the_replica_is_the_one_the_network_seed_picks():
    curves = np.stack([np.full((2, 2, 1, 4), value) for value in (1.0, 2.0, 3.0)])
    answers = table.Table([[0.0, 1.0], [0.0, 1.0]], curves, log_learning_rate=False)
    assert [answers.scores({'learning_rate': 0.3, 'weight_decay': 0.6, 'seed': seed, 'epochs': 1})['val_loss']
            for seed in (0, 1, 2, 3, 901243215)] == pytest.approx([1.0, 2.0, 3.0, 1.0, 1.0 + 901243215 % 3])


def test_a_log_scale_table_interpolates_in_log10_of_the_learning_rate():
    curves = np.zeros((1, 2, 2, 1, 4))
    curves[0, :, :, 0, 0] = [[0.0, 0.0], [1.0, 1.0]]
    answers = table.Table([[-4.0, -1.0], [0.0, 1.0]], curves, log_learning_rate=True)
    assert answers.scores({'learning_rate': 0.001, 'weight_decay': 0.5, 'seed': 0, 'epochs': 1})['val_loss'] == \
        pytest.approx(1 / 3)


def test_a_point_outside_the_tables_box_is_refused():
    answers = table.Table([[0.0, 1.0], [0.0, 1.0]], np.zeros((1, 2, 2, 1, 4)), log_learning_rate=False)
    with pytest.raises(table.TableError, match="the point 1.5 is outside the table's range 0.0 to 1.0"):
        answers.scores({'learning_rate': 1.5, 'weight_decay': 0.5, 'seed': 0, 'epochs': 1})


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
    (['--weight-decay-bounds', '0', '0.01'], 'was built with weight_decay_bounds [0.0, 0.001], this run has [0.0, 0.01]'),
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


@pytest.mark.parametrize('damage, named', [
    (lambda path: None, 'grid.curves.csv (or .gz) is missing'),
    (lambda path: path.write_text(''.join(path.read_text().splitlines(keepends=True)[:10])),
     'is not finished: it records 9 of its 18 grid evaluations'),
])
def test_a_table_without_its_curves_or_unfinished_is_refused(damage, named, digits_table, tmp_path, capsys):
    path = without_curves(digits_table, tmp_path)
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
    *lines, last = curves.splitlines(keepends=True)
    fields = last.rstrip('\n').split(',')
    fields[-1] = '0.25' if fields[-1] != '0.25' else '0.5'  # the last network's test accuracy at its last epoch
    (tmp_path / 'grid.curves.csv').write_text(''.join(lines) + ','.join(fields) + '\n')
    stderr = refused(experiment.main, run, capsys)
    assert "was made with another configuration (table_sha256 '" in stderr


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
    experiment.main([*TABLE_SETTINGS, '--method', 'sobol,random,grid,tpe', '--evaluations', '9', '--repetitions', '2',
                     '--quiet', '--output', str(real)])
    real_rows = typed_rows(real)
    capsys.readouterr()
    experiment.main(['--report', str(on_table), '--against', str(real)])
    printed = capsys.readouterr().out
    means = {}
    for name, rows in (('table', table_rows), ('real', real_rows)):
        for method in ('sobol', 'random', 'grid', 'tpe'):  # the repetitions both finished: 1 and 2
            bests = [min(searches.finite_or_inf(row['val_loss']) for row in rows
                         if (row['method'], row['repetition']) == (method, repetition)) for repetition in (1, 2)]
            means[name, method] = np.mean([best for best in bests if math.isfinite(best)])
    table_ranks = stats.rankdata([means['table', method] for method in ('sobol', 'random', 'grid', 'tpe')])
    real_ranks = stats.rankdata([means['real', method] for method in ('sobol', 'random', 'grid', 'tpe')])
    written = on_table.with_suffix('.against.md').read_text()
    for method, table_rank, real_rank in zip(('sobol', 'random', 'grid', 'tpe'), table_ranks, real_ranks):
        line = next(line for line in written.splitlines() if line.startswith(f'| {method} |'))
        cells = [cell.strip() for cell in line.strip('|').split('|')]
        assert cells[1] == '2' and float(cells[2]) == pytest.approx(means['table', method], abs=5e-5)
        assert float(cells[3]) == pytest.approx(means['real', method], abs=5e-5)
        assert (float(cells[5]), float(cells[6])) == (table_rank, real_rank)
    spearman = stats.spearmanr(table_ranks, real_ranks).statistic
    assert f"Spearman's correlation between the methods' means: {spearman:.2f}" in printed
    assert f"Spearman's correlation between the methods' means: {spearman:.2f}" in written


@pytest.mark.parametrize('arguments, named', [
    (lambda table_run, real: ['--against', str(real)], '--against {real} needs --report with one file'),
    (lambda table_run, real: ['--report', str(real), '--against', str(table_run)],
     '--against: {real} must be a run on a table and {table_run} one without'),
])
def test_a_check_against_real_training_needs_a_table_run_and_a_real_one(arguments, named, every_method_on_the_table,
                                                                        pretend_training, tmp_path, capsys):
    table_run = every_method_on_the_table[0]
    real = tmp_path / 'real.csv'
    experiment.main([*TABLE_SETTINGS, '--method', 'sobol', '--evaluations', '9', '--quiet', '--output', str(real)])
    before = snapshot(tmp_path)
    assert named.format(real=real, table_run=table_run) in refused(experiment.main, arguments(table_run, real), capsys)
    assert snapshot(tmp_path) == before
