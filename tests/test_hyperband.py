"""Hyperband (searches.HyperbandSearch): its brackets at the paper's compute, its promotions, networks continued from
their weights, the results file's fidelity columns (format 3, format 2 still read), resume after a stop anywhere,
and the reports at equal compute."""
import json
import math
import shutil
from fractions import Fraction

import pytest
import torch
from conftest import read_rows, refused, small_run, snapshot, typed_rows, without_seconds

import dataset_management
import files
import network
import report
import results
import searches
import test as experiment

BOUNDS = {'learning_rate': (0.0001, 0.1), 'weight_decay': (0, 0.001)}
# 2 repetitions of 9 scorings (brackets [(3, 1), (1, 3)], [(2, 3)] and the cut [(2, 1), (1, 3)]) and of 5 evaluations
RUN = small_run(method='hyperband,random', evaluations=5, epochs=3, init_points=None, quiet=True)


def li_et_al_bracket(s, s_max, max_epochs, eta=3):
    """Bracket s of Li et al.'s Algorithm 1 in exact arithmetic: (n_i, r_i) per rung, r_i rounded to whole epochs."""
    n = math.ceil(Fraction(s_max + 1, s + 1) * eta ** s)
    return [(math.floor(Fraction(n, eta ** i)), round(Fraction(max_epochs, eta ** (s - i)))) for i in range(s + 1)]


def test_the_brackets_at_the_papers_compute_follow_li_et_al_and_the_last_is_cut_to_the_budget_left():
    full = [li_et_al_bracket(s, 3, 50) for s in (3, 2, 1, 0)]
    assert full == [[(27, 2), (9, 6), (3, 17), (1, 50)], [(12, 6), (4, 17), (1, 50)], [(6, 17), (2, 50)], [(4, 50)]]
    brackets = searches.hyperband_brackets(50, 25 * 50, 3)
    # a promoted network continues: bracket s=3 costs 27*2 + 9*4 + 3*11 + 1*33 = 156 model-epochs, the four 673
    assert brackets == tuple(map(tuple, full + full[:3] + [[(2, 50)]]))  # 1,146 spent: 104 left pay for 2 of 4
    assert searches.HyperbandSearch.rows_per_search(evaluations=25, epochs=50) == 2 * (40 + 17 + 8 + 4) - 2
    assert searches.hyperband_brackets(3, 15, 3) == (((3, 1), (1, 3)), ((2, 3),), ((2, 1), (1, 3)))  # 5 + 6 + 4
    assert searches.hyperband_brackets(3, 2, 3) == ()  # not one network of 3 epochs


def told(search, losses):
    """Ask for a rung and tell it `losses` (by configuration); return the points asked."""
    points = search.ask()
    search.tell([dict(iteration=number, val_loss=losses[point['configuration']])
                 for number, point in enumerate(points, 1)])
    return points


def test_a_rung_keeps_its_best_third_diverged_last_ties_by_the_earlier_row_and_continues_them():
    search = searches.METHODS['hyperband'](BOUNDS, seed=4, evaluations=25, init_points=5, epochs=50)
    first = told(search, {number: 1.0 for number in range(1, 28)} | {5: 0.5, 9: math.nan, 20: 0.7, 3: 0.7, 26: 0.8,
                                                                        1: 0.75, 2: 0.75, 11: 0.79})
    assert [point['configuration'] for point in first] == list(range(1, 28))
    assert first == [{**point, 'bracket': 1, 'configuration': number, 'epochs': 2, 'epochs_before': 0}
                     for number, point in enumerate(searches.random_points(BOUNDS, evaluations=27, seed=4), 1)]
    second = search.ask()  # the 9 best of 27 (5, 3, 20, 1, 2, 11, 26, then the first two tied: 4, 6), to 6 epochs
    assert [point['configuration'] for point in second] == [1, 2, 3, 4, 5, 6, 11, 20, 26]
    assert second == sorted(second, key=lambda point: point['configuration'])
    assert all(point == {**first[point['configuration'] - 1], 'epochs': 6, 'epochs_before': 2} for point in second)


def test_a_network_continued_rung_by_rung_is_the_network_trained_its_epochs_in_one_go():
    splits = dataset_management.load_splits('digits')
    options = dict(seeds=[3, 4], learning_rates=[0.05, 0.09], weight_decays=[0.0, 0.001], batch_size=64)
    def members(parameters):
        return [{name: tensor[member] for name, tensor in parameters.items()} for member in range(2)]
    at_once, at_once_weights = network.train_and_evaluate_from(splits, weights=[None, None], epochs=5, **options)
    _, after_two = network.train_and_evaluate_from(splits, weights=[None, None], epochs=2, **options)
    in_steps, in_steps_weights = network.train_and_evaluate_from(splits, weights=members(after_two), epochs=3,
                                                                 **options)
    for one_go, steps in zip(at_once, in_steps):
        assert one_go['val_loss'] == pytest.approx(steps['val_loss'], rel=1e-6)
        assert one_go['test_accuracy'] == steps['test_accuracy']
    for name, tensor in at_once_weights.items():
        torch.testing.assert_close(in_steps_weights[name], tensor, rtol=1e-5, atol=1e-7)
    scored, _ = network.train_and_evaluate_from(splits, weights=members(in_steps_weights), epochs=0, **options)
    assert [row['val_loss'] for row in scored] == [row['val_loss'] for row in in_steps]  # the weights scored


def spent_model_epochs(search_rows):
    """The model-epochs a Hyperband search's rows cost, counted from its rungs: each row its added epochs."""
    reached = {}
    total = 0
    for row in search_rows:
        total += row['epochs'] - reached.get(row['configuration'], 0)
        reached[row['configuration']] = row['epochs']
    return total


def test_a_run_scores_every_rung_continuing_the_kept_networks_within_the_budget_and_cleans_up(tmp_path):
    experiment.main([*RUN, '--output', str(tmp_path / 'results.csv')])
    rows = typed_rows(tmp_path / 'results.csv')
    hyperband = [row for row in rows if row['method'] == 'hyperband']
    assert len(hyperband) == 2 * 9 and len(rows) == 2 * 9 + 2 * 5
    for repetition in (1, 2):
        search = sorted((row for row in hyperband if row['repetition'] == repetition), key=lambda row: row['iteration'])
        assert [(row['bracket'], row['epochs']) for row in search] == [(1, 1)] * 3 + [(1, 3), (2, 3), (2, 3)] + [
            (3, 1)] * 2 + [(3, 3)]
        assert spent_model_epochs(search) == 15 == 5 * 3
        kept, = [row for row in search if (row['bracket'], row['epochs']) == (1, 3)]
        first_rung = search[:3]
        assert kept['configuration'] == min(first_rung, key=lambda row: row['val_loss'])['configuration']
        assert kept['seed'] == searches.seed_for(0, repetition, kept['configuration'])
        assert all(row['repeat_of'] is None for row in search)
    assert json.loads((tmp_path / 'results.config.json').read_text())['hyperband_reduction_factor'] == 3
    assert not (tmp_path / 'results.weights').exists()
    assert read_rows(tmp_path / 'results.csv')[0]['bracket'] == '1'


class Stopped(KeyboardInterrupt):
    """A stop signal, as stopping.Stopped, raised by the test."""


@pytest.fixture(scope='module')
def hyperband_uninterrupted(finished_run):
    """population -> the rows of RUN uninterrupted in populations of that size, made once."""
    return lambda population: without_seconds(read_rows(finished_run([*RUN, '--population', str(population)])))


@pytest.mark.parametrize('population, appends, before_writing', [
    (2, 1, True),  # mid-rung: the first of bracket 1's first rung's 3 populations, before it is written
    (2, 4, False),  # between brackets 1 and 2
    (10, 5, True),  # in bracket 3's last rung, before it is written (weights saved, rows not)
])
def test_a_run_stopped_anywhere_resumes_to_the_file_of_an_uninterrupted_run(population, appends, before_writing,
                                                                             hyperband_uninterrupted, tmp_path,
                                                                             monkeypatch):
    """Stopped at an append of Hyperband's rows (before or after they are written)."""
    run = [*RUN, '--population', str(population)]
    append, calls = results.ResultsFile.append, []

    def stopping_append(self, rows):
        calls.append(rows)
        if len(calls) == appends and before_writing:
            raise Stopped
        append(self, rows)
        if len(calls) == appends:
            raise Stopped
    monkeypatch.setattr(results.ResultsFile, 'append', stopping_append)
    output = tmp_path / 'results.csv'
    with pytest.raises(SystemExit):
        experiment.main([*run, '--output', str(output)])
    assert (tmp_path / 'results.weights').is_dir()  # the rungs trained so far
    monkeypatch.setattr(results.ResultsFile, 'append', append)
    experiment.main([*run, '--output', str(output)])
    assert without_seconds(read_rows(output)) == hyperband_uninterrupted(population)
    assert not (tmp_path / 'results.weights').exists()


def test_a_resume_whose_weights_are_gone_ends_in_one_line_and_one_with_another_population_completes(tmp_path,
                                                                                                   monkeypatch, capsys):
    append, calls = results.ResultsFile.append, []

    def stopping_append(self, rows):  # stopped after repetition 1's first rung (3 networks, one at a time)
        append(self, rows)
        calls.append(rows)
        if len(calls) == 3:
            raise Stopped
    monkeypatch.setattr(results.ResultsFile, 'append', stopping_append)
    output = tmp_path / 'results.csv'
    with pytest.raises(SystemExit):
        experiment.main([*RUN, '--population', '1', '--output', str(output)])
    monkeypatch.setattr(results.ResultsFile, 'append', append)
    shutil.copytree(tmp_path / 'results.weights', tmp_path / 'kept')
    shutil.rmtree(tmp_path / 'results.weights')
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        experiment.main([*RUN, '--population', '1', '--output', str(output)])
    stderr = capsys.readouterr().err
    assert exit.value.code == 1 and stderr.count('\n') == 1, stderr
    assert 'results.weights/hyperband-r1-c' in stderr and '-e1.pt is missing' in stderr and '--fresh' in stderr
    shutil.copytree(tmp_path / 'kept', tmp_path / 'results.weights')
    experiment.main([*RUN, '--population', '10', '--output', str(output)])  # a population of rows of both searches
    assert len(read_rows(output)) == 2 * 9 + 2 * 5 and not (tmp_path / 'results.weights').exists()


def as_format_2(source, target):
    """A results file (and configuration) as the code before format 3 wrote it."""
    columns = results.COLUMNS_OF_FORMAT[2]
    target.write_text(''.join(','.join(row[name] for name in columns) + '\n' for row in
                              [dict(zip(columns, columns)), *read_rows(source)]))
    configuration = json.loads(open(files.configuration_path(str(source))).read())
    with open(files.configuration_path(str(target)), 'w') as file:
        json.dump({**configuration, 'results_format': 2}, file)


def test_a_format_2_file_resumes_in_format_2_and_reports_as_its_format_3_twin(tmp_path, capsys):
    run = ['--dataset', 'digits', '--device', 'cpu', '--method', 'bayesian,sobol', '--evaluations', '4',
           '--init-points', '2', '--epochs', '1', '--repetitions', '2', '--quiet']
    experiment.main([*run, '--output', str(tmp_path / 'new.csv')])
    as_format_2(tmp_path / 'new.csv', tmp_path / 'whole.csv')
    lines = (tmp_path / 'whole.csv').read_text().splitlines(keepends=True)
    (tmp_path / 'old.csv').write_text(''.join(lines[:6]))
    shutil.copy(files.configuration_path(str(tmp_path / 'whole.csv')),
                files.configuration_path(str(tmp_path / 'old.csv')))
    experiment.main([*run, '--output', str(tmp_path / 'old.csv')])
    assert without_seconds(read_rows(tmp_path / 'old.csv')) == without_seconds(read_rows(tmp_path / 'whole.csv'))
    assert json.loads(open(files.configuration_path(str(tmp_path / 'old.csv'))).read())['results_format'] == 2
    capsys.readouterr()
    tables = []
    for name in ('old.csv', 'new.csv'):
        experiment.main(['--report', str(tmp_path / name), '--quiet'])
        tables.append(capsys.readouterr().out.split('\nwritten: ')[0])
    assert tables[0] == tables[1] and 'Table I' in tables[0]


def hyperband_rows(search):
    """Results rows of one search from (bracket, configuration, epochs, val_loss) tuples, in order, each with the
    epochs its configuration had before (as its point carries them)."""
    reached, rows = {}, []
    for number, (bracket, configuration, epochs, loss) in enumerate(search, 1):
        rows.append(dict(method='hyperband', repetition=1, iteration=number, repeat_of=None, bracket=bracket,
                         configuration=configuration, epochs=epochs, epochs_before=reached.get(configuration, 0),
                         val_loss=loss, val_accuracy=0.5, test_accuracy=0.5))
        reached[configuration] = epochs
    return rows


def test_table_i_and_the_compute_axis_count_only_networks_trained_the_full_epochs():
    search = hyperband_rows([(1, 1, 1, 0.1), (1, 2, 1, 0.9), (1, 1, 3, 0.6), (2, 3, 3, 0.4), (2, 4, 3, math.nan)])
    spent, best = report.search_progress(search, 3)
    assert list(spent) == [1, 2, 4, 7, 10] and list(best) == [math.inf, math.inf, 0.6, 0.4, 0.4]
    assert report.best_rows(search, 'hyperband', 3) == [search[3]]
    # within 5 model-epochs; 10 spent: no network of 3 epochs more fits in 12; 14 not reached
    assert report.best_losses_at(search, 'hyperband', [5, 12, 14], 3) == {5: {1: 0.6}, 12: {1: 0.4}, 14: {}}
    title = report.summary_table(search[:2], report.summary_rows(search[:2], ['hyperband'], 3), 3).title
    assert title.endswith('(hyperband repetition 1: none trained 3 epochs yet)')


@pytest.mark.parametrize('arguments, named', [
    (['--epochs', '2'], '--epochs 2 is too few for hyperband: at least 3'),
    (['--ray', 'local'], '--ray cannot train hyperband'),
])
def test_what_hyperband_cannot_run_is_refused_in_one_line(arguments, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        experiment.main([*RUN, *arguments, '--output', str(tmp_path / 'results.csv')])
    stderr = capsys.readouterr().err
    assert exit.value.code == 2 and stderr.count('\n') == 1 and named in stderr, stderr
    assert list(tmp_path.iterdir()) == []


# Edits of repetition 1's rows (iteration: column, value) that leave every value one a run could write
EDITS = [((4, 'epochs', '1'), 'epochs is 1, where the plan makes it 3'),  # bracket 1's second rung
         ((5, 'bracket', '3'), 'bracket is 3, where the plan makes it 2'),
         ((8, 'configuration', '6'), 'configuration is 6, where the plan makes it 7'),  # bracket 3's first rung
         ((2, 'learning_rate', '0.05'), 'learning_rate is 0.05, where the plan makes it 0.0')]


@pytest.mark.parametrize('edit, named', EDITS, ids=[edit[1] for edit, _ in EDITS])
def test_an_edited_hyperband_row_is_refused_alike_by_resume_and_report_naming_the_line(edit, named, finished_run,
                                                                                       tmp_path, capsys):
    uninterrupted = finished_run([*RUN, '--population', '10'])
    shutil.copy(uninterrupted, tmp_path / 'results.csv')
    shutil.copy(files.configuration_path(str(uninterrupted)), tmp_path / 'results.config.json')
    iteration, column, value = edit
    lines = (tmp_path / 'results.csv').read_text().splitlines(keepends=True)
    number = next(number for number, line in enumerate(lines, 1) if line.startswith(f'hyperband,1,{iteration},'))
    fields = lines[number - 1].split(',')
    fields[results.COLUMNS.index(column)] = value
    lines[number - 1] = ','.join(fields)
    (tmp_path / 'results.csv').write_text(''.join(lines))
    before = snapshot(tmp_path)
    for arguments in ([*RUN, '--population', '10'], ['--report']):
        stderr = refused(experiment.main, [*arguments, str(tmp_path / 'results.csv')] if arguments == ['--report']
                         else [*arguments, '--output', str(tmp_path / 'results.csv')], capsys)
        assert f'results.csv line {number} (hyperband repetition 1 iteration {iteration}): ' in stderr
        assert named.split(', where')[0] in stderr and named.split(', where')[1] in stderr
    assert snapshot(tmp_path) == before
