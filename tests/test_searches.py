"""searches.py: each method behind the ask-and-tell interface, the authors' Bayesian optimisation (the paper's
Table II replayed), optunity's Sobol points, uniform random points, and Optuna's TPE and GP samplers in the paper's
protocol."""
import json
import math
import os
import random
import re
import shutil
import signal

import numpy as np
import optuna
import optunity
import pytest
import torch
from conftest import (ROOT, FakeResultsFile, read_rows, rows_in, run_script, small_run, start_and_stop, typed_rows,
                      without_seconds)
from scipy import stats
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import Matern

import dataset_management
import files
import local_training
import network
import run_settings
import searches
import test as experiment

BOUNDS = {'learning_rate': (0.0001, 0.1), 'weight_decay': (0, 0.001)}


def test_sobol_search_evaluates_optunitys_sequence_from_the_seeded_skip():
    points = searches.sobol_points(BOUNDS, evaluations=25, seed=7)
    random.seed(7)
    skip = random.randint(200, 1000)
    unit = optunity.solvers.Sobol.i4_sobol_generate(2, 25, skip)
    shrunk = {'learning_rate': (0.0005995, 0.0995005), 'weight_decay': (0.000005, 0.000995)}  # optunity's 99%
    expected = [{name: low + u * (high - low) for (name, (low, high)), u in zip(shrunk.items(), x)} for x in unit]
    assert len(points) == 25
    for point, want in zip(points, expected):
        assert point == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert searches.sobol_points(BOUNDS, evaluations=25, seed=7) == points


def test_random_search_draws_independent_uniform_coordinates_reproducibly_from_its_seed():
    box = {'learning_rate': (0.0001, 0.1), 'weight_decay': (0, 0.001)}
    points = searches.random_points(box, evaluations=2000, seed=7)
    columns = {name: np.array([point[name] for point in points]) for name in box}
    for name, (low, high) in box.items():
        assert low <= columns[name].min() and columns[name].max() <= high
        assert stats.kstest(columns[name], stats.uniform(low, high - low).cdf).pvalue > 0.01  # uniform
        assert abs(np.corrcoef(columns[name][:-1], columns[name][1:])[0, 1]) < 0.1  # each draw new
    assert abs(np.corrcoef(columns['learning_rate'], columns['weight_decay'])[0, 1]) < 0.1  # coordinates apart
    assert searches.random_points(box, evaluations=2000, seed=7) == points
    assert searches.random_points(box, evaluations=25, seed=7) == points[:25]  # the budget changes no point
    assert all(a != b for a, b in zip(points, searches.random_points(box, evaluations=25, seed=8)))


# The paper's Table II, one Bayesian search of the authors on CIFAR-10: (loss, learning rate, weight decay)
PAPER_TABLE_II = [
    (1.522100040487423, 0.07790364658499195, 0.0003113590404249613),
    (1.3066085163195422, 0.09713183521392078, 3.807391059064314e-05),
    (1.2386448436481938, 0.09962929630955666, 0.00032689900116565906),
    (1.185623772964356, 0.08839772348012497, 0.0006898133589174131),
    (1.159533618741734, 0.04027967267377352, 0.0009626519421269333),
    (2.25699576147043, 0.0001, 0.001),
    (1.1351020427266503, 0.023872752132106875, 0.0),
    (1.1435793152280673, 0.056207162561639525, 0.001),
    (1.0532525379186983, 0.03136838518276603, 0.001),
    (1.118292302083058, 0.04934696689449622, 0.0),
    (1.152301168365843, 0.033653197798621255, 0.0),
    (1.1103247092787627, 0.016824143294099574, 0.001),
    (1.2051728758842322, 0.06341467276985273, 0.0),
    (1.1874851724904054, 0.021333409012656273, 0.001),
    (1.1424505171502473, 0.011332271665925726, 0.0),
    (1.145875146054918, 0.046351931870789044, 0.001),
    (1.065783442964979, 0.027854693888176872, 0.001),
    (1.074766206893192, 0.015390851423193453, 0.0),
    (1.1237120131018814, 0.029458368749569804, 0.0),
    (1.1762064011992923, 0.051456124255251416, 0.001),
    (1.3072483497820082, 0.05854119655268067, 0.0),
    (1.291730211418905, 0.0694316962401854, 0.001),
    (1.1320924880398306, 0.08429459295975464, 0.001),
    (1.0766326515537918, 0.013487631600152566, 0.001),
    (1.2079456232155963, 0.0636388328114694, 0.001),
]
INIT_POINTS = 5


def proposes_the_paper(proposal, row):
    """Whether a proposal is the paper's row to within 1e-4 of each range."""
    return all(abs(proposal[name] - value) <= 1e-4 * (high - low)
               for (name, (low, high)), value in zip(BOUNDS.items(), row[1:]))


def replay(*, library, repetitions=5):
    """Register the paper's rows 1..n (target: minus the loss) in a fresh optimizer and ask for the next point, for n
    = 5..24 and the search seeds of repetitions 1 to `repetitions`: how many of the 20 proposals a repetition are the
    paper's row n + 1."""
    matches = 0
    for repetition in range(1, repetitions + 1):
        for known in range(INIT_POINTS, len(PAPER_TABLE_II)):
            optimizer = searches.bayesian_optimizer(BOUNDS, seed=searches.seed_for(0, repetition), library=library)
            for loss, learning_rate, weight_decay in PAPER_TABLE_II[:known]:
                optimizer.register({'learning_rate': learning_rate, 'weight_decay': weight_decay}, -loss)
            matches += proposes_the_paper(optimizer.suggest(), PAPER_TABLE_II[known])
    return matches


def test_the_authors_gaussian_process_proposes_the_papers_table_ii():
    assert replay(library=False) >= 90


def test_bayes_opt_3_4s_own_gaussian_process_fails_the_same_replay():
    assert replay(library=True, repetitions=1) <= 2  # 0 when measured (and 0 of 100 over five repetitions)


def test_the_optimizer_fits_the_authors_gaussian_process_with_25_restarts_from_its_own_random_state():
    optimizer = searches.bayesian_optimizer(BOUNDS, seed=3)
    for loss, learning_rate, weight_decay in PAPER_TABLE_II[:INIT_POINTS]:
        optimizer.register({'learning_rate': learning_rate, 'weight_decay': weight_decay}, -loss)
    optimizer.suggest()
    gaussian_process = optimizer._gp  # what bayes_opt fitted: fails if an upgrade renames or stops using it
    assert gaussian_process.target_mean_ == pytest.approx(-np.mean([row[0] for row in PAPER_TABLE_II[:5]]))
    assert gaussian_process.n_restarts_optimizer == 25 and gaussian_process.alpha == 1e-6
    assert gaussian_process.kernel_.nu == 2.5 and gaussian_process.random_state is optimizer._random_state
    assert searches.bayesian_optimizer(BOUNDS, seed=3, library=True)._gp.n_restarts_optimizer == 5


@pytest.mark.parametrize('scale', [1, 100])
def test_the_authors_gaussian_process_centres_the_targets_without_scaling_them(scale):
    points, targets = [[0.1, 0.2], [0.5, 0.5], [0.9, 0.1]], scale * np.array([-1.0, -2.0, -4.0])
    far = [[50.0, 50.0]]  # where the posterior is the prior

    def fitted(model, **options):
        return model(kernel=Matern(nu=2.5), alpha=1e-6, optimizer=None, **options).fit(points, targets)
    mean, std = fitted(searches.CentredGaussianProcess).predict(far, return_std=True)
    assert mean == pytest.approx(targets.mean()) and std == pytest.approx(1)  # the kernel's own prior std
    mean, std = fitted(GaussianProcessRegressor, normalize_y=True).predict(far, return_std=True)
    assert mean == pytest.approx(targets.mean()) and std == pytest.approx(targets.std())  # scikit-learn >= 0.23


# Optuna's samplers in the paper's protocol

OPTUNA_METHODS = ('tpe', 'gp')


def told_scores(search, evaluations, score=lambda point: sum(point.values())):
    """Ask `search` for `evaluations` points one at a time, telling each its scored row before the next ask; the
    points."""
    points, rows = [], []
    for iteration in range(1, evaluations + 1):
        [point] = search.ask()
        rows.append({'iteration': iteration, 'repeat_of': None, 'val_loss': score(point)})
        search.tell([rows[-1]])
        points.append(point)
    return points


@pytest.mark.parametrize('method', OPTUNA_METHODS)
def test_an_optuna_search_starts_with_its_seeds_uniform_random_points_then_its_model_proposes(method):
    search = searches.METHODS[method](BOUNDS, seed=11, evaluations=8, init_points=3, epochs=1)
    points = told_scores(search, 8)
    random_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=11))
    distributions = {name: optuna.distributions.FloatDistribution(*bounds) for name, bounds in BOUNDS.items()}
    assert points[:3] == [random_study.ask(distributions).params for _ in range(3)]  # n_startup_trials
    other_scores = searches.METHODS[method](BOUNDS, seed=11, evaluations=8, init_points=3, epochs=1)
    other_points = told_scores(other_scores, 8, score=lambda point: -sum(point.values()))
    assert other_points[:3] == points[:3] and other_points[3] != points[3]  # the model's: it depends on the scores
    trials = search.study.trials
    assert search.study.study_name == searches.STUDY_NAME and search.study.direction.name == 'MAXIMIZE'
    assert [trial.state.name for trial in trials] == ['COMPLETE'] * 8  # each told before the next was asked
    assert [trial.value for trial in trials] == [-sum(point.values()) for point in points]
    assert searches.METHODS[method](BOUNDS, seed=11, evaluations=8, init_points=3, epochs=1).ask() == [points[0]]
    assert told_scores(searches.METHODS[method](BOUNDS, seed=11, evaluations=8, init_points=3, epochs=1), 8) == points
    other_seed = searches.METHODS[method](BOUNDS, seed=12, evaluations=8, init_points=3, epochs=1)
    assert told_scores(other_seed, 8)[0] != points[0]


def test_tpe_and_gp_use_optuna_5s_samplers_with_their_defaults():
    tpe = searches.METHODS['tpe'](BOUNDS, seed=1, evaluations=8, init_points=4, epochs=1).study.sampler
    gp = searches.METHODS['gp'](BOUNDS, seed=1, evaluations=8, init_points=4, epochs=1).study.sampler
    assert isinstance(tpe, optuna.samplers.TPESampler) and isinstance(gp, optuna.samplers.GPSampler)
    assert tpe._n_startup_trials == gp._n_startup_trials == 4  # the pinned version's names: the protocol's init points
    assert tpe._constant_liar and tpe._multivariate is None  # 5.0's defaults: constant liar, multivariate
    assert searches.packages(['bayesian', 'tpe', 'sobol', 'gp']) == ('optuna', 'greenlet')
    assert searches.packages(['sobol']) == ()


def test_a_gaussian_process_fit_leaves_torchs_threads_and_the_next_trainings_numbers_as_they_were():
    splits = dataset_management.load_splits('digits')
    config = dict(seed=3, learning_rate=0.05, weight_decay=0.0001, epochs=1, batch_size=64)
    threads, openblas = torch.get_num_threads(), os.environ.get('OPENBLAS_NUM_THREADS')
    before = network.train_and_evaluate(splits, **config)
    told_scores(searches.METHODS['gp'](BOUNDS, seed=5, evaluations=6, init_points=2, epochs=1), 6)  # 4 fits
    assert torch.get_num_threads() == threads and os.environ.get('OPENBLAS_NUM_THREADS') == openblas
    assert {**network.train_and_evaluate(splits, **config), 'seconds': 0} == {**before, 'seconds': 0}


def test_grid_search_spans_the_box_from_bound_to_bound_learning_rate_outer_in_a_fixed_order():
    points = searches.grid_points(BOUNDS, evaluations=9, seed=7)
    assert [(point['learning_rate'], point['weight_decay']) for point in points] == [
        (lr, wd) for lr in (0.0001, 0.0001 + (0.1 - 0.0001) / 2, 0.1) for wd in (0, 0.0005, 0.001)]
    assert points == searches.grid_points(BOUNDS, evaluations=9, seed=8)  # the seed plays no part
    assert len(searches.grid_points(BOUNDS, evaluations=625, seed=0)) == 625
    corners = searches.grid_points(BOUNDS, evaluations=625, seed=0)
    assert (corners[0], corners[24], corners[-1]) == ({'learning_rate': 0.0001, 'weight_decay': 0.0},
                                                     {'learning_rate': 0.0001, 'weight_decay': 0.001},
                                                     {'learning_rate': 0.1, 'weight_decay': 0.001})  # exactly


def test_a_log_scale_grid_spaces_the_learning_rate_evenly_in_its_logarithm(tmp_path, pretend_training):
    experiment.main(['--dataset', 'digits', '--method', 'grid', '--evaluations', '16', '--repetitions', '2',
                     '--lr-scale', 'log', '--learning-rate-bounds', '0.0001', '0.1', '--quiet',
                     '--output', str(tmp_path / 'results.csv')])
    rows = typed_rows(tmp_path / 'results.csv')
    rates = sorted({row['learning_rate'] for row in rows})
    assert rates == pytest.approx([0.0001, 0.001, 0.01, 0.1], rel=1e-12) and rates[0] == 0.0001 and rates[-1] == 0.1
    first, second = ([(row['learning_rate'], row['weight_decay'], row['seed']) for row in rows
                      if row['repetition'] == repetition] for repetition in (1, 2))
    assert [point[:2] for point in first] == [point[:2] for point in second]  # replicas: the same points
    assert all(a[2] != b[2] for a, b in zip(first, second))  # with other network seeds


@pytest.mark.parametrize('evaluations, named', [('24', '--evaluations 24 is not a square for grid: it trains an n x '
                                                       'n grid (n >= 2), such as 16 or 25'),
                                                ('1', '--evaluations 1 is not a square for grid'),
                                                ('3', 'such as 4')])
def test_a_grid_of_evaluations_that_are_no_square_is_refused_in_one_line(evaluations, named, tmp_path, capsys):
    from conftest import refused
    stderr = refused(experiment.main, ['--dataset', 'digits', '--method', 'sobol,grid', '--evaluations', evaluations,
                                       '--output', str(tmp_path / 'results.csv')], capsys)
    assert named in stderr and list(tmp_path.iterdir()) == []


# tpe and gp in the experiment

OPTUNA_RUN = small_run(evaluations=6, method='tpe,gp')  # 24 evaluations, 8 of them init points


@pytest.mark.parametrize('population', [1, 3])
@pytest.mark.parametrize('rows_kept', [3, 10, 17])  # within the init points, then the model's proposals
def test_an_optuna_run_stopped_anywhere_resumes_to_the_file_of_an_uninterrupted_run(population, rows_kept,
                                                                                      pretend_training, tmp_path):
    run = [*OPTUNA_RUN, '--population', str(population)]
    full = tmp_path / 'full.csv'
    experiment.main([*run, '--output', str(full)])
    lines = full.read_text().splitlines(keepends=True)
    output = tmp_path / 'resumed.csv'
    output.write_text(''.join(lines[:rows_kept + 1]) + lines[rows_kept + 1][:20])  # and a cut last line
    shutil.copy(files.configuration_path(str(full)), files.configuration_path(str(output)))
    experiment.main([*run, '--output', str(output)])
    assert without_seconds(read_rows(output)) == without_seconds(read_rows(full))
    rows = typed_rows(full)
    assert len(rows) == 24 and len({(row['learning_rate'], row['weight_decay']) for row in rows}) >= 20


def test_an_optuna_run_killed_in_its_model_guided_evaluations_resumes_to_the_same_file(tmp_path, capfd):
    """Real training, one network at a time: tpe's 6 evaluations, then gp's, killed among gp's proposals (the
    in-process test above stops tpe's too)."""
    run = [*OPTUNA_RUN, '--repetitions', '1', '--population', '1']
    experiment.main([*run, '--output', str(tmp_path / 'uninterrupted.csv')])
    assert capfd.readouterr().err == ''  # no line per Optuna trial
    start_and_stop(tmp_path / 'results.csv', 10, signal.SIGKILL, run)  # gp's 4th: its 2nd proposal
    assert 10 <= rows_in(tmp_path / 'results.csv') < 12
    assert run_script('test.py', *run, '--output', 'results.csv', cwd=tmp_path).returncode == 0
    assert without_seconds(read_rows(tmp_path / 'results.csv')) == without_seconds(
        read_rows(tmp_path / 'uninterrupted.csv'))
    assert json.loads((tmp_path / 'results.config.json').read_text())['versions']['optuna'] == optuna.__version__


def test_optuna_searches_search_the_log_box_the_other_methods_see(pretend_training, tmp_path):
    run = [*OPTUNA_RUN, '--lr-scale', 'log', '--learning-rate-bounds', '0.001', '0.1']
    args = experiment.build_parser().parse_args(run)
    for method in OPTUNA_METHODS:
        assert run_settings.Settings.of(args).search(method, 1).distributions == {
            'log10_learning_rate': optuna.distributions.FloatDistribution(-3, -1),
            'weight_decay': optuna.distributions.FloatDistribution(0, 0.001)}
    experiment.main([*run, '--output', str(tmp_path / 'results.csv')])
    rates = [row['learning_rate'] for row in typed_rows(tmp_path / 'results.csv')]
    assert len(rates) == 24 and all(0.001 <= rate <= 0.1 for rate in rates)
    assert sum(rate < 0.01 for rate in rates) >= 6  # half the log range: under 10% of the linear one


def test_a_diverged_network_is_told_to_optuna_as_to_the_other_methods(monkeypatch, tmp_path):
    def scores(learning_rate, *_):  # diverged above 0.05
        loss = math.nan if learning_rate > 0.05 else 1 + learning_rate
        return dict(val_loss=loss, val_accuracy=0.1, test_loss=loss, test_accuracy=0.1, seconds=1.0)
    monkeypatch.setattr(network, 'train_and_evaluate_population',
                        lambda splits, **config: [scores(lr) for lr in config['learning_rates']])
    told, tell = [], searches.OptunaSearch.tell

    def spy(search, rows):
        tell(search, rows)
        told.append((rows[0], search.study.trials[-1].value))
    monkeypatch.setattr(searches.OptunaSearch, 'tell', spy)
    args = experiment.build_parser().parse_args([*OPTUNA_RUN, '--evaluations', '12', '--init-points', '4',
                                                 '--population', '3', '--output', str(tmp_path / 'results.csv')])
    rows = experiment.run_searches(local_training.LocalTraining(None, args), args, FakeResultsFile(args))
    assert len(rows) == len(told) == 48 and any(math.isnan(row['val_loss']) for row in rows)
    for row, value in told:  # minus the loss; diverged: minus the worse of 2 ln 10 and the search's worst so far
        earlier = [other['val_loss'] for other in rows if (other['method'], other['repetition']) == (
            row['method'], row['repetition']) and other['iteration'] < row['iteration']]
        worst = max([2 * math.log(10), *(loss for loss in earlier if not math.isnan(loss))])
        assert value == (-worst if math.isnan(row['val_loss']) else -row['val_loss'])
    assert -2 * math.log(10) in [value for _, value in told]


def test_the_reports_show_the_optuna_methods_as_the_others(pretend_training, tmp_path, capsys):
    experiment.main([*OPTUNA_RUN, '--method', 'tpe,gp,sobol', '--output', str(tmp_path / 'results.csv')])
    out = capsys.readouterr().out
    assert re.search(r'^tpe +2 ', out, re.M) and re.search(r'^gp +2 ', out, re.M)  # Table I
    assert 'Table II: gp, repetition 2' in out and '6 evaluations, 2 init points' in out
    assert re.search(r'^tpe vs gp +5 ', out, re.M) and re.search(r'^gp vs sobol +6 ', out, re.M)
    summary = json.loads((tmp_path / 'results.summary.json').read_text())
    assert list(summary['mean_best_so_far']) == ['tpe', 'gp', 'sobol'] and 'optuna' in summary['versions']


def test_the_documented_example_method_runs_as_every_other_method(pretend_training, monkeypatch, tmp_path, capsys):
    methods = (ROOT / 'docs' / 'methods.md').read_text()
    example = methods[methods.index('**Adding a method**'):]
    example = example[example.index('```python\n') + len('```python\n'):example.index('\n```\n')]
    monkeypatch.setattr(searches, 'METHODS', dict(searches.METHODS))  # the example's line adds to this copy
    exec(example, dict(vars(searches)))
    run = ['--dataset', 'digits', '--device', 'cpu', '--evaluations', '8', '--repetitions', '2',
           '--method', 'latin-hypercube,sobol', '--output', str(tmp_path / 'results.csv')]
    experiment.main(run)
    rows = [row for row in typed_rows(tmp_path / 'results.csv') if row['method'] == 'latin-hypercube']
    for repetition in (1, 2):
        points = [row for row in rows if row['repetition'] == repetition]
        for name, (low, high) in BOUNDS.items():  # one point in each eighth of each range
            assert sorted(int((row[name] - low) / (high - low) * 8) for row in points) == list(range(8))
    assert rows[0]['learning_rate'] != rows[8]['learning_rate']  # each repetition its seed
    assert re.search(r'^latin-hypercube +2 ', capsys.readouterr().out, re.M)  # in Table I
    versions = json.loads((tmp_path / 'results.config.json').read_text())['versions']
    assert 'optuna' not in versions and 'greenlet' not in versions  # as before Optuna's methods came
    experiment.main(run)
    assert 'resuming' in capsys.readouterr().out and len(read_rows(tmp_path / 'results.csv')) == 32
