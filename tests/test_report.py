"""report.py: Tables I and II, the statistics (best so far, Mann-Whitney U), the summary files, the plots, and
--report, which rebuilds them from a results file without training."""
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from conftest import ROOT, refused, run_script, small_run, snapshot, typed_rows

import files
import network
import report
import results
import test as experiment

RUN = small_run(evaluations=6, repetitions=3, method='bayesian,sobol,random')
REPORT_FILES = ['summary.json', 'summary.md', 'convergence', 'convergence-model-epochs', 'points', 'sobol-vs-random']


@pytest.fixture(scope='module')
def three_methods(finished_run):
    """A finished run of all three methods on digits, as a user runs it: (folder, stdout)."""
    output, stdout = finished_run(RUN, script=True)
    return output.parent, stdout


def test_table_one_uses_each_repetitions_best_finite_evaluation():
    rows = [dict(method='sobol', repetition=repetition, iteration=i, epochs=1, val_loss=loss, val_accuracy=accuracy,
                 test_accuracy=accuracy / 2)
            for repetition, i, loss, accuracy in [(1, 1, 1.0, 0.5), (1, 2, math.nan, 0.1), (1, 3, 2.0, 0.4),
                                                  (2, 1, 3.0, 0.2), (2, 2, 1.5, 0.7), (3, 1, 1.25, 0.6)]]
    (method, runs, loss, loss_std, accuracy, accuracy_std, test_accuracy, test_std), = report.summary_rows(
        rows, ['sobol'], 1)
    assert (method, runs) == ('sobol', 3)
    assert loss == pytest.approx(1.25) and loss_std == pytest.approx(0.25)
    assert accuracy == pytest.approx(60) and accuracy_std == pytest.approx(10)
    assert test_accuracy == pytest.approx(30) and test_std == pytest.approx(5)


def test_mann_whitney_matches_scipy_and_exact_values():
    exact = report.mann_whitney([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], names=('a', 'b'))
    assert exact['u'] == 0 and exact['p_value'] == pytest.approx(0.1)  # 2 of the 20 orderings are this extreme
    assert exact['verdict'] == 'no significant difference at 5% over 3 repetitions'
    apart = report.mann_whitney(list(range(10, 20)), list(range(10)), names=('sobol', 'random'))
    normal = (100 - 50 - 0.5) / math.sqrt(10 * 10 * 21 / 12)  # 10 and 10: the normal approximation, corrected
    assert apart['u'] == 100 and apart['p_value'] == pytest.approx(math.erfc(normal / math.sqrt(2)))
    assert apart['verdict'] == 'random finds lower losses than sobol (significant at 5% over 10 repetitions)'
    rng = np.random.default_rng(0)
    for first, second in [(rng.normal(0, 1, 10), rng.normal(0.5, 1, 10)), (rng.normal(0, 1, 7), rng.normal(2, 1, 9)),
                          ([0.5, 0.5, 0.7, math.inf], [0.5, 0.6, 0.6, 0.9, 0.9])]:  # ties; a diverged best
        expected = stats.mannwhitneyu(first, second, alternative='two-sided')
        result = report.mann_whitney(list(first), list(second), names=('x', 'y'))
        assert (result['u'], result['p_value']) == (expected.statistic, expected.pvalue)
    assert report.mann_whitney([1.0, 2.0], [3.0, 4.0], names=('x', 'y'))['verdict'].endswith('over 2 repetitions')
    assert report.mann_whitney([1.0, 2.0], [3.0, 4.0, 5.0], names=('x', 'y'))['verdict'].endswith(
        'over 2 and 3 repetitions')


def test_fewer_than_two_repetitions_get_no_deviation_and_no_test_printed_as_numbers(tmp_path, capsys):
    rows = rows_of('sobol', [[0.5, 0.4]]) + rows_of('random', [[0.3, 0.6]])
    args = experiment.build_parser().parse_args(['--method', 'sobol,random', '--evaluations', '2', '--epochs', '1',
                                                 '--repetitions', '1', '--quiet'])
    report.report_results(rows, args, {'versions': {}, 'devices': []}, str(tmp_path / 'results.csv'))
    printed = capsys.readouterr().out
    assert 'nan' not in printed and '1.0000' not in printed  # no deviation, no p-value of 1
    table_one = printed[printed.index('Table I'):].splitlines()
    assert table_one[4].split() == ['sobol', '1', '0.4000', 'n<2', '50.0000%', 'n<2', '50.0000%', 'n<2']
    assert 'sobol vs random      2  n<2      n<2  not tested: 1 repetition (at least 2 each)' in printed
    summary = json.loads((tmp_path / 'results.summary.json').read_text())
    assert summary['mann_whitney_u'] == [{'after': 2, 'methods': ['sobol', 'random'], 'u': None, 'p_value': None,
                                          'verdict': 'not tested: 1 repetition (at least 2 each)'}]
    assert summary['table_1']['sobol']['std_val_loss'] is None


STUDIES = sorted([*(ROOT / 'studies').glob('*.csv'), *(ROOT / 'studies').glob('*.csv.gz')])


@pytest.mark.parametrize('study', STUDIES, ids=lambda path: path.name.split('.')[0])
def test_report_on_a_copy_of_a_committed_study_gives_its_committed_summaries(study, tmp_path, monkeypatch):
    for plot in ('plot_convergence', 'plot_points', 'plot_unit_square'):  # drawn, not compared: the tests above
        monkeypatch.setattr(report, plot, lambda *_, **__: None)       # check the plots (about 5 s a study)
    copy = tmp_path / ('study.csv.gz' if study.name.endswith('.gz') else 'study.csv')
    shutil.copy(study, copy)
    shutil.copy(files.configuration_path(str(study)), files.configuration_path(str(copy)))
    experiment.main(['--report', str(copy), '--quiet'])
    committed = [suffix for suffix in ('.summary.json', '.summary.md')  # a large summary.md is not committed
                 if os.path.exists(files.path_beside(str(study), suffix))]
    assert '.summary.json' in committed
    for suffix in committed:
        assert (Path(files.path_beside(str(copy), suffix)).read_text()
                == Path(files.path_beside(str(study), suffix)).read_text()), suffix


def rows_of(method, losses_by_repetition):
    return [dict(method=method, repetition=repetition, iteration=iteration, repeat_of=None, bracket=None,
                 configuration=None, epochs=1, epochs_before=0, val_loss=loss, val_accuracy=0.5, test_accuracy=0.5,
                 learning_rate=0.01, weight_decay=0.0, seconds=1.0)
            for repetition, losses in enumerate(losses_by_repetition, 1)
            for iteration, loss in enumerate(losses, 1)]


def test_the_best_so_far_means_and_the_tests_count_the_same_repetitions_of_a_file_being_written():
    rows = rows_of('sobol', [[0.5] * 10, [0.4] * 6]) + rows_of('random', [[0.3] * 10, [0.2] * 10])  # sobol 2: at 6
    summary = report.best_so_far_summary(rows, ['sobol', 'random'], 10)
    assert summary['sobol'][5] == pytest.approx((0.45, np.std([0.5, 0.4], ddof=1)))
    assert summary['sobol'][10] == (0.5, None)  # repetition 1 alone
    after_10 = report.method_comparisons(rows, ['sobol', 'random'], 10)[1]
    assert after_10['after'] == 10 and after_10['verdict'] == 'not tested: 1 and 2 repetitions (at least 2 each)'


def test_best_so_far_and_its_mean_after_5_10_and_25_evaluations():
    assert list(report.search_progress(rows_of('sobol', [[3, math.nan, 2, 5, 1]]))[1]) == [3, 3, 2, 2, 1]
    assert list(report.search_progress(rows_of('sobol', [[math.nan, math.nan, 4]]))[1]) == [math.inf, math.inf, 4]
    first = [2.0] * 4 + [1.0] * 5 + [0.5] * 16  # bests so far: 2 after 4 evaluations, 1 after 5 to 9, 0.5 after 10
    second = [4.0] * 9 + [3.0] * 16
    summary = report.best_so_far_summary(rows_of('bayesian', [first, second]), ['bayesian'], 25)
    assert list(summary['bayesian']) == [5, 10, 25]
    assert summary['bayesian'][5] == pytest.approx((2.5, np.std([1, 4], ddof=1)))
    assert summary['bayesian'][10] == pytest.approx((1.75, np.std([0.5, 3], ddof=1)))
    assert summary['bayesian'][25] == pytest.approx((1.75, np.std([0.5, 3], ddof=1)))
    assert list(report.best_so_far_summary(rows_of('sobol', [[1.0] * 8]), ['sobol'], 8)['sobol']) == [5, 8]


def test_summary_json_is_strict_json_with_null_for_undefined_numbers(tmp_path):
    rows = rows_of('sobol', [[0.5, 0.4]])  # one repetition: no standard deviation
    args = experiment.build_parser().parse_args(['--method', 'sobol', '--evaluations', '2', '--epochs', '1'])
    report.write_summaries(report.summary(rows, report.statistics(rows, args), {'versions': {}, 'devices': []}), [],
                           str(tmp_path / 'results.csv'))
    summary = json.loads((tmp_path / 'results.summary.json').read_text(),
                         parse_constant=lambda name: pytest.fail(f'{name} in summary.json'))
    assert summary['table_1']['sobol']['mean_val_loss'] == 0.4 and summary['table_1']['sobol']['std_val_loss'] is None
    assert summary['mean_best_so_far']['sobol'] == {'2': {'mean': 0.4, 'std': None}}


def test_methods_are_compared_on_each_repetitions_best_with_diverged_ones_worst():
    rows = (rows_of('bayesian', [[0.3, 0.2], [math.nan, 0.1], [math.nan, math.nan]])
            + rows_of('sobol', [[0.5, 0.7], [0.6, math.nan]]))
    comparison, = report.method_comparisons(rows, ['bayesian', 'sobol', 'random'], 2)  # random has no rows: skipped
    expected = stats.mannwhitneyu([0.2, 0.1, math.inf], [0.5, 0.6], alternative='two-sided')
    assert comparison['methods'] == ['bayesian', 'sobol'] and comparison['p_value'] == expected.pvalue
    assert comparison['after'] == 2


def test_methods_are_compared_after_each_checkpoint_on_the_repetitions_that_reached_it():
    # best so far after 5 and after 10 evaluations, worked out by hand from these searches
    bayesian = [[0.9] * 4 + [0.5] + [0.4] * 5, [0.8] * 10, [0.7] * 5 + [0.2] * 5, [0.6] * 9 + [0.1]]
    sobol = [[0.75] * 10, [0.65] * 6 + [0.3] * 4, [0.85] * 10, [0.55] * 5]  # the last stopped after 5
    rows = rows_of('bayesian', bayesian) + rows_of('sobol', sobol)
    after_5, after_10 = report.method_comparisons(rows, ['bayesian', 'sobol'], 10)
    assert (after_5['after'], after_10['after']) == (5, 10)
    for comparison, first, second in [(after_5, [0.5, 0.8, 0.7, 0.6], [0.75, 0.65, 0.85, 0.55]),
                                      (after_10, [0.4, 0.8, 0.2, 0.1], [0.75, 0.3, 0.85])]:
        expected = stats.mannwhitneyu(first, second, alternative='two-sided')
        assert (comparison['u'], comparison['p_value']) == (expected.statistic, expected.pvalue)
    # pairs with bayesian's loss the larger: 0.8 > 0.75, 0.65, 0.55; 0.7 > 0.65, 0.55; 0.6 > 0.55
    assert after_5['u'] == 6
    assert after_10['verdict'] == 'no significant difference at 5% over 4 and 3 repetitions'
    table = report.format_table(report.comparison_table([after_5, after_10]))
    assert re.search(r'^bayesian vs sobol\s+5\s+6\.0\s', '\n'.join(table), re.MULTILINE)


def test_a_run_writes_summaries_with_table_one_the_best_configurations_and_the_statistics(three_methods):
    folder, stdout = three_methods
    rows = typed_rows(folder / 'results.csv')
    summary = json.loads((folder / 'results.summary.json').read_text())
    configuration = json.loads((folder / 'results.config.json').read_text())
    assert configuration['devices'] == [network.device_name('cpu')]
    for method in ('bayesian', 'sobol', 'random'):
        searches = [[row for row in rows if row['method'] == method and row['repetition'] == repetition]
                    for repetition in (1, 2, 3)]
        bests = [min(search, key=lambda row: row['val_loss']) for search in searches]
        assert summary['best_configurations'][method] == bests
        losses = [best['val_loss'] for best in bests]
        assert summary['table_1'][method]['mean_val_loss'] == pytest.approx(np.mean(losses))
        assert summary['table_1'][method]['std_val_loss'] == pytest.approx(np.std(losses, ddof=1))
        assert summary['table_1'][method]['repetitions'] == 3
        assert summary['mean_best_so_far'][method]['5']['mean'] == pytest.approx(
            np.mean([min(row['val_loss'] for row in search[:5]) for search in searches]))
        assert list(summary['mean_best_so_far'][method]) == ['5', '6']
    first, second = [[best['val_loss'] for best in summary['best_configurations'][method]]
                     for method in ('bayesian', 'sobol')]
    assert summary['mann_whitney_u'][1]['p_value'] == stats.mannwhitneyu(first, second).pvalue  # after all 6
    assert [(test['methods'], test['after']) for test in summary['mann_whitney_u']] == [
        (methods, after) for methods in (['bayesian', 'sobol'], ['bayesian', 'random'], ['sobol', 'random'])
        for after in (5, 6)]
    assert summary['configuration'] == {name: value for name, value in configuration.items()
                                        if name not in ('versions', 'devices', 'machines')}
    assert summary['versions'] == configuration['versions'] and summary['devices'] == configuration['devices']
    assert summary['machines'] == configuration['machines'] == [results.machine()]
    assert summary['training_wall_seconds'] == pytest.approx(sum(row['seconds'] for row in rows))
    below_table_one = stdout[stdout.index('Table I:'):]
    assert below_table_one.index('Mean best validation loss so far') < below_table_one.index('Mann-Whitney')
    markdown = (folder / 'results.summary.md').read_text()
    for test in summary['mann_whitney_u']:  # one line each, in the printed table and in the Markdown one
        cells = [' vs '.join(test['methods']), str(test['after']), f"{test['u']:.1f}", f"{test['p_value']:.4f}",
                 re.escape(test['verdict'])]
        assert re.search(r'^' + r'\s+'.join(cells) + r'$', below_table_one, re.MULTILINE)
        assert re.search(r'^\| ' + r' \| '.join(cells) + r' \|$', markdown, re.MULTILINE)
    assert markdown.startswith('**Table I: best validation loss')
    assert markdown.count('**Table II: ') == 9 and '| --- | ---: |' in markdown


def png_pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert('RGB'))


@pytest.mark.drawn
def test_the_convergence_plot_spans_the_means_and_bands_from_the_fifth_evaluation_on(monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(report.Figure, 'savefig', lambda figure, *_, **__: figures.append(figure))
    rows = rows_of('sobol', [[9.0, 3.0, 2.0, 1.0, 0.6, 0.5, 0.2], [5.0, 4.0, 3.0, 2.0, 1.0, 0.3, 0.3]])
    args = experiment.build_parser().parse_args(['--method', 'sobol', '--evaluations', '7', '--dataset', 'digits'])
    report.plot_convergence(rows, args, tmp_path / 'convergence.png')
    bests = np.array([[0.6, 0.5, 0.2], [1.0, 0.3, 0.3]])  # the best losses so far after 5 to 7 evaluations
    mean, std = bests.mean(axis=0), bests.std(axis=0, ddof=1)
    low, high = (mean - std).min(), (mean + std).max()
    assert figures[0].axes[0].get_ylim() == pytest.approx((low - 0.1 * (high - low), high + 0.1 * (high - low)))


@pytest.mark.parametrize('name, size', [('convergence', (800, 500)), ('points', (1500, 450)),
                                        ('sobol-vs-random', (1000, 500))])
def test_plots_are_pngs_of_the_right_size_with_content(three_methods, name, size):
    folder, _ = three_methods
    pixels = png_pixels(folder / f'results.{name}.png')
    assert pixels.shape == (size[1], size[0], 3)
    not_white = (pixels < 250).any(axis=2)
    assert 0.02 < not_white.mean() < 0.6  # axes, text and markers, not a blank or filled page
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # coloured lines, bands and markers
    left, right = not_white[:, :size[0] // 2], not_white[:, size[0] // 2:]
    assert left.mean() > 0.01 and right.mean() > 0.01  # drawn across the figure, not in one corner


@pytest.mark.drawn
def test_report_rebuilds_the_same_files_without_training(three_methods, tmp_path, monkeypatch, capsys):
    folder, stdout = three_methods
    for name in ('results.csv', 'results.config.json'):
        shutil.copy(folder / name, tmp_path / name)

    def no_training(*args, **kwargs):
        raise AssertionError('--report trained a network')
    monkeypatch.setattr(network, 'train_and_evaluate', no_training)
    monkeypatch.setattr(network, 'train_and_evaluate_population', no_training)
    experiment.main(['--report', str(tmp_path / 'results.csv')])
    printed = capsys.readouterr().out
    for suffix in ('.summary.json', '.summary.md'):
        assert (tmp_path / f'results{suffix}').read_text() == (folder / f'results{suffix}').read_text()
    for name in REPORT_FILES[2:]:
        assert png_pixels(tmp_path / f'results.{name}.png').shape == png_pixels(folder / f'results.{name}.png').shape
    assert printed.count('Table II: ') == 9
    assert (printed[printed.index('Table I:'):printed.index('written:')]
            == stdout[stdout.index('Table I:'):stdout.index('written:')])


def test_report_of_a_file_still_being_written_covers_its_rows_so_far(three_methods, tmp_path):
    folder, _ = three_methods
    lines = (folder / 'results.csv').read_text().splitlines(keepends=True)
    (tmp_path / 'results.csv').write_text(''.join(lines[:9]) + lines[9][:20])  # 8 rows, one cut short
    shutil.copy(folder / 'results.config.json', tmp_path / 'results.config.json')
    before = (tmp_path / 'results.csv').read_bytes()
    result = run_script('test.py', '--report', 'results.csv', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / 'results.summary.json').read_text())
    assert list(summary['table_1']) == ['bayesian'] and summary['table_1']['bayesian']['repetitions'] == 3
    assert summary['mann_whitney_u'] == [] and 'Mann-Whitney' not in result.stdout
    assert (tmp_path / 'results.csv').read_bytes() == before  # read, never repaired


@pytest.mark.parametrize('files, named', [([], 'results.config.json cannot be read'),
                                          (['results.config.json'], 'results.csv cannot be read'),
                                          (['header', 'results.config.json'], 'records no evaluation')])
def test_report_of_a_missing_or_empty_file_is_one_line_and_writes_nothing(three_methods, files, named, tmp_path,
                                                                          capsys):
    folder, _ = three_methods
    for name in files:
        if name == 'header':
            (tmp_path / 'results.csv').write_text(','.join(results.COLUMNS) + '\n')
        else:
            shutil.copy(folder / name, tmp_path / name)
    before = snapshot(tmp_path)
    assert named in refused(experiment.main, ['--report', str(tmp_path / 'results.csv')], capsys)
    assert snapshot(tmp_path) == before


