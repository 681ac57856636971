"""comparison.py and test.py --report FILE FILE ...: the methods compared across tasks: bootstrap intervals,
normalised regret, ranks and the Friedman test computed independently on handmade rows, the refusals, and the files
and plots written."""
import argparse
import gzip
import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image
from conftest import read_rows, refused, small_run, snapshot
from scipy import stats

import comparison
import test as experiment


def handmade_task(name, losses, *, table_best=None):
    """A task from {method: [[loss after each evaluation] per repetition]} (5 evaluations of 1 epoch)."""
    rows = [dict(method=method, repetition=repetition, iteration=iteration, repeat_of=None, bracket=None,
                 configuration=None, epochs=1, epochs_before=0, val_loss=loss, val_accuracy=0.5, test_accuracy=0.5)
            for method, searches in losses.items() for repetition, search in enumerate(searches, 1)
            for iteration, loss in enumerate(search, 1)]
    args = argparse.Namespace(method=tuple(losses), evaluations=5, epochs=1, repetitions=2)
    return comparison.Task(name, args, rows, table_best=table_best)


FIRST = {'sobol': [[0.9, 0.5, 0.7, 0.4, 0.6], [0.8, 0.8, 0.3, 0.9, 0.9]],
         'random': [[1.0, 0.6, 0.6, 0.6, 0.5], [math.nan, 1.2, 0.3, 0.8, 0.7]],  # a diverged network; a tie
         'gp': [[0.7, 0.2, 0.9, 0.8, 0.9], [math.nan, math.nan, math.nan, math.nan, math.nan]]}  # all diverged
SECOND = {'sobol': [[2.0, 1.5, 1.0, 1.0, 1.0], [1.8, 1.2, 1.2, 1.1, 0.9]],
          'random': [[1.9, 1.9, 1.4, 1.3, 1.2], [2.2, 2.0, 1.9, 1.9, 1.9]],
          'gp': [[1.2, 0.8, 0.8, 0.8, 0.8], [1.9, 0.9, 0.7, 0.7, 0.7]]}


def test_normalised_regret_is_measured_from_the_tasks_best_to_a_random_points_median_loss():
    task = handmade_task('first', FIRST)
    assert task.best == 0.2 and task.best_from == 'the lowest loss any method found'
    # sorted, the random rows are 0.3 0.5 0.6 0.6 0.6 | 0.7 0.8 1.0 1.2 and the diverged one, the worst
    assert task.typical == pytest.approx((0.6 + 0.7) / 2)
    assert task.regret(0.4) == pytest.approx((0.4 - 0.2) / (0.65 - 0.2))
    on_a_table = handmade_task('table', FIRST, table_best=0.1)
    assert on_a_table.best == 0.1 and on_a_table.best_from == "the table's lowest loss"
    assert on_a_table.best_by_repetition('gp', 5) == {1: 0.2, 2: math.inf}
    assert on_a_table.best_by_repetition('sobol', 3) == {1: 0.5, 2: 0.3}


def test_ranks_over_every_task_and_repetition_with_ties_shared_and_a_diverged_search_last():
    tasks = [handmade_task('first', FIRST), handmade_task('second', SECOND)]
    blocks, pairs = comparison.rank_blocks(tasks, ['sobol', 'random', 'gp'], 5)
    assert pairs == [('first', 1), ('first', 2), ('second', 1), ('second', 2)]
    # first 1: sobol 0.4, random 0.5, gp 0.2; first 2: 0.3, 0.3, inf; second 1: 1.0, 1.2, 0.8; second 2: 0.9, 1.9, 0.7
    expected = np.array([[2, 3, 1], [1.5, 1.5, 3], [2, 3, 1], [2, 3, 1]]).mean(axis=0)
    assert list(comparison.mean_ranks(blocks)) == list(expected)
    statistic, p_value = comparison.friedman(blocks)
    scipy = stats.friedmanchisquare([0.4, 0.3, 1.0, 0.9], [0.5, 0.3, 1.2, 1.9], [0.2, math.inf, 0.8, 0.7])
    assert (statistic, p_value) == (pytest.approx(scipy.statistic), pytest.approx(scipy.pvalue))


def test_a_search_short_of_a_checkpoint_leaves_its_pair_out_of_the_ranks():
    short = {method: [searches[0], searches[1][:3]] for method, searches in FIRST.items()}  # repetition 2: 3 of 5
    short['gp'] = FIRST['gp']
    task = handmade_task('short', short)
    assert task.best_by_repetition('sobol', 5) == {1: 0.4} and task.best_by_repetition('sobol', 3) == {1: 0.5, 2: 0.3}
    blocks, pairs = comparison.rank_blocks([task], ['sobol', 'random', 'gp'], 5)
    assert pairs == [('short', 1)] and blocks.tolist() == [[0.4, 0.5, 0.2]]


def test_the_bootstrap_interval_is_seeded_repeatable_and_brackets_the_mean():
    values = [0.31, 0.35, 0.29, 0.4, 0.33, 0.38, 0.3, 0.36]
    low, high = comparison.bootstrap_interval(values)
    assert comparison.bootstrap_interval(values) == (low, high)
    assert low < np.mean(values) < high and high - low < 0.06
    assert comparison.bootstrap_interval([0.5]) == (0.5, 0.5)
    assert 0.5 <= comparison.bootstrap_interval([0.5, 0.7])[0] < comparison.bootstrap_interval([0.5, 0.7])[1] <= 0.7


def task_file(folder, name, *, seed=0, methods='sobol,random,bayesian', evaluations=5, epochs=1):
    """A finished small run, trained for pretence: its path."""
    experiment.main([*small_run(method=methods, evaluations=evaluations, repetitions=3, epochs=epochs, seed=seed,
                                quiet=True), '--output', str(folder / f'{name}.csv')])
    return folder / f'{name}.csv'


@pytest.mark.drawn
def test_a_report_across_files_prints_and_writes_its_tables_and_plots(pretend_training, tmp_path, capsys):
    first, second = task_file(tmp_path, 'first'), task_file(tmp_path, 'second', seed=1, epochs=2)  # its own epochs
    capsys.readouterr()
    experiment.main(['--report', str(first), str(second)])
    printed = capsys.readouterr().out
    assert 'first: mean best validation loss after this many evaluations [95% bootstrap interval' in printed
    assert 'second: mean normalised regret, (best loss found - the lowest loss any method found' in printed
    assert 'Mean rank over every (task, repetition) pair' in printed
    data = json.loads((tmp_path / 'first.across.json').read_text())
    assert list(data['tasks']) == ['first', 'second'] and data['ranks']['5']['blocks'] == 6
    blocks = []  # each repetition's best loss by method, read from the files here
    for path in (first, second):
        for repetition in (1, 2, 3):
            blocks.append([min(float(row['val_loss']) for row in read_rows(path)
                               if (row['method'], row['repetition']) == (method, str(repetition)))
                           for method in ('sobol', 'random', 'bayesian')])
    assert data['ranks']['5']['mean_rank'] == pytest.approx(dict(zip(('sobol', 'random', 'bayesian'),
                                                                     stats.rankdata(blocks, axis=1).mean(axis=0))))
    assert data['tasks']['first']['methods']['sobol']['5']['mean'] == pytest.approx(np.mean([b[0] for b in blocks[:3]]))
    for name in ('ranks', 'critical-difference'):
        image = np.asarray(Image.open(tmp_path / f'first.{name}.png').convert('L'))
        assert image.shape == (500 if name == 'ranks' else 400, 800) and (image < 128).mean() > 0.005
    again = tmp_path / 'again.across.json'
    experiment.main(['--report', str(first), str(second), '--across', str(tmp_path / 'again.csv')])
    assert again.read_text() == (tmp_path / 'first.across.json').read_text()  # the bootstrap is seeded
    experiment.main(['--report', str(first), '--across', str(tmp_path / 'alone.csv')])  # one task: over repetitions
    assert json.loads((tmp_path / 'alone.across.json').read_text())['ranks']['5']['blocks'] == 3


def gzipped(path):
    """The results file at `path` gzipped in its place (NAME.csv -> NAME.csv.gz): its path."""
    target = path.parent / (path.name + '.gz')
    target.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return target


def test_finished_runs_gzipped_report_as_they_did_plain_and_a_run_writes_no_gzip(pretend_training, tmp_path, capsys):
    first, second = task_file(tmp_path, 'first'), task_file(tmp_path, 'second', seed=1)
    experiment.main(['--report', str(first)])
    experiment.main(['--report', str(first), str(second)])
    written = ('first.summary.json', 'first.summary.md', 'first.across.json')
    plain = {name: (tmp_path / name).read_bytes() for name in written}
    first, second = gzipped(first), gzipped(second)
    for name in written:
        (tmp_path / name).unlink()
    experiment.main(['--report', str(first)])
    experiment.main(['--report', str(first), str(second)])
    assert {name: (tmp_path / name).read_bytes() for name in written} == plain
    cut = tmp_path / 'cut.csv.gz'
    cut.write_bytes(first.read_bytes()[:-20])
    shutil.copy(tmp_path / 'first.config.json', tmp_path / 'cut.config.json')
    assert f'{cut} cannot be read (Compressed file ended before the end-of-stream marker was reached)' in refused(
        experiment.main, ['--report', str(cut)], capsys)
    assert f'{first}: a run writes a plain .csv (gzip it once it is finished: --report reads it so)' in refused(
        experiment.main, [*small_run(), '--output', str(first)], capsys)


@pytest.mark.parametrize('other, named', [
    (dict(methods='sobol,random'), "second has method ('sobol', 'random'), first ('sobol', 'random', 'bayesian')"),
    (dict(evaluations=4), 'second has evaluations 4, first 5: a comparison across files needs the same methods'),
])
def test_files_of_other_methods_or_budgets_are_refused_in_one_line(other, named, pretend_training, tmp_path, capsys):
    first, second = task_file(tmp_path, 'first'), task_file(tmp_path, 'second', **other)
    before = snapshot(tmp_path)
    assert named in refused(experiment.main, ['--report', str(first), str(second)], capsys)
    assert snapshot(tmp_path) == before


def test_a_task_without_random_search_has_no_regret_and_is_refused(pretend_training, tmp_path, capsys):
    first = task_file(tmp_path, 'first', methods='sobol,bayesian')
    assert 'first has no finite random-search loss: normalised regret needs method random' in refused(
        experiment.main, ['--report', str(first), '--across', str(tmp_path / 'x.csv')], capsys)


def test_one_file_named_two_ways_is_one_task_and_refused_twice(pretend_training, tmp_path, capsys):
    first = task_file(tmp_path, 'first')
    (tmp_path / 'link.csv').symlink_to(first)
    (tmp_path / 'sub').mkdir()
    before = snapshot(tmp_path)
    for other in (tmp_path / 'sub' / '..' / 'first.csv', tmp_path / 'link.csv'):
        assert f'{first} and {other} are the same file: each task once' in refused(
            experiment.main, ['--report', str(first), str(other)], capsys)
    assert snapshot(tmp_path) == before


def test_a_file_that_records_nothing_is_named_as_such_across_files(pretend_training, tmp_path, capsys):
    first = task_file(tmp_path, 'first')
    empty = tmp_path / 'empty.csv'
    empty.write_text(first.read_text().splitlines(keepends=True)[0])
    shutil.copy(first.with_suffix('.config.json'), tmp_path / 'empty.config.json')
    assert f'{empty} records no evaluation yet' in refused(experiment.main, ['--report', str(first), str(empty)],
                                                           capsys)
