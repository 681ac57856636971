"""The Bayesian search as the authors ran it: their Gaussian process proposes the paper's Table II, a point proposed
again is answered as bayes_opt 1.0.1 answered it, and bayes_opt 3.4's own Gaussian process is the method
'bayesian-library'."""
import csv
import shutil

import numpy as np
import pytest
from bayes_opt import BayesianOptimization, target_space
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import Matern

from conftest import pretend_scores

import test as experiment

BOUNDS = {'learning_rate': (0.0001, 0.1), 'weight_decay': (0, 0.001)}
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


def replay(*, library):
    """Register the paper's rows 1..n (target: minus the loss) in a fresh optimiser and ask for the next point, for n
    = 5..24 and the search seeds of repetitions 1-5: how many of the 100 proposals are the paper's row n + 1."""
    matches = 0
    for repetition in range(1, 6):
        for known in range(INIT_POINTS, len(PAPER_TABLE_II)):
            optimizer = experiment.bayesian_optimizer(BOUNDS, seed=experiment.seed_for(0, repetition),
                                                      library=library)
            for loss, learning_rate, weight_decay in PAPER_TABLE_II[:known]:
                optimizer.register({'learning_rate': learning_rate, 'weight_decay': weight_decay}, -loss)
            matches += proposes_the_paper(optimizer.suggest(), PAPER_TABLE_II[known])
    return matches


def test_the_authors_gaussian_process_proposes_the_papers_table_ii():
    assert replay(library=False) >= 90


def test_bayes_opt_3_4s_own_gaussian_process_fails_the_same_replay():
    assert replay(library=True) <= 10  # 0 when measured


def test_the_optimiser_fits_the_authors_gaussian_process_with_25_restarts_from_its_own_random_state():
    optimizer = experiment.bayesian_optimizer(BOUNDS, seed=3)
    for loss, learning_rate, weight_decay in PAPER_TABLE_II[:INIT_POINTS]:
        optimizer.register({'learning_rate': learning_rate, 'weight_decay': weight_decay}, -loss)
    optimizer.suggest()
    gaussian_process = optimizer._gp  # what bayes_opt fitted: fails if an upgrade renames or stops using it
    assert gaussian_process.target_mean_ == pytest.approx(-np.mean([row[0] for row in PAPER_TABLE_II[:5]]))
    assert gaussian_process.n_restarts_optimizer == 25 and gaussian_process.alpha == 1e-6
    assert gaussian_process.kernel_.nu == 2.5 and gaussian_process.random_state is optimizer._random_state
    assert experiment.bayesian_optimizer(BOUNDS, seed=3, library=True)._gp.n_restarts_optimizer == 5


@pytest.mark.parametrize('scale', [1, 100])
def test_the_authors_gaussian_process_centres_the_targets_without_scaling_them(scale):
    points, targets = [[0.1, 0.2], [0.5, 0.5], [0.9, 0.1]], scale * np.array([-1.0, -2.0, -4.0])
    far = [[50.0, 50.0]]  # where the posterior is the prior

    def fitted(model, **options):
        return model(kernel=Matern(nu=2.5), alpha=1e-6, optimizer=None, **options).fit(points, targets)
    mean, std = fitted(experiment.CentredGaussianProcess).predict(far, return_std=True)
    assert mean == pytest.approx(targets.mean()) and std == pytest.approx(1)  # the kernel's own prior std
    mean, std = fitted(GaussianProcessRegressor, normalize_y=True).predict(far, return_std=True)
    assert mean == pytest.approx(targets.mean()) and std == pytest.approx(targets.std())  # scikit-learn >= 0.23


def read_rows(path):
    with open(path, newline='') as file:
        return list(csv.DictReader(file))


def test_a_bayesian_search_makes_exactly_its_budget_of_evaluations_starting_with_random_points(pretend_training,
                                                                                               tmp_path):
    experiment.main(['--dataset', 'digits', '--device', 'cpu', '--evaluations', '7', '--init-points', '3',
                     '--repetitions', '1', '--method', 'bayesian', '--output', str(tmp_path / 'results.csv')])
    rows = read_rows(tmp_path / 'results.csv')
    assert [row['iteration'] for row in rows] == ['1', '2', '3', '4', '5', '6', '7']
    state = np.random.RandomState(experiment.seed_for(0, 1))  # bayes_opt draws init points from its random_state
    expected = [(state.uniform(0.0001, 0.1), state.uniform(0, 0.001)) for _ in range(3)]
    np.testing.assert_allclose([(float(row['learning_rate']), float(row['weight_decay'])) for row in rows[:3]],
                               expected, rtol=1e-12)


RUN = ['--dataset', 'digits', '--device', 'cpu', '--evaluations', '5', '--init-points', '2', '--repetitions', '2',
       '--method', 'bayesian']
CORNER = {'learning_rate': 0.1, 'weight_decay': 0.001}


@pytest.fixture
def proposes_the_corner(monkeypatch):
    """Every Gaussian-process proposal is the corner of the box, so that each search must repeat it; the list of the
    points told to the optimisers."""
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
    fields[7] = '0.25'  # its validation loss
    output.write_text(''.join(lines[:7] + [','.join(fields)] + lines[8:]))
    with pytest.raises(SystemExit) as exit:
        experiment.main([*RUN, '--population', '3', '--output', str(output)])
    stderr = capsys.readouterr().err
    assert exit.value.code == 2 and stderr.count('\n') == 1
    assert 'line 8: a repeat of iteration 3, which the file does not record at the same point with the same scores' \
        in stderr


class RecordedFile:
    """What train_rows needs of test.Results: the scores a results file records, by iteration, and the iterations
    it writes."""
    show_bar = False

    def __init__(self, recorded):
        self.recorded, self.written = recorded, []

    def recorded_scores(self, row):
        return self.recorded.get(row['iteration'])

    def write(self, rows):
        self.written += [row['iteration'] for row in rows]


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
        return experiment.new_row('bayesian', 1, iteration, {'learning_rate': learning_rate, 'weight_decay': 0}, args)
    original = {**row(1, 0.01), **pretend_scores(0.01, 0, 7)}
    rows = [row(2, 0.02), experiment.answered_from_cache(row(3, 0.01), [original]), row(4, 0.04)]
    file = RecordedFile({iteration: pretend_scores(0.5, 0, 0) for iteration in recorded})
    experiment.train_rows(rows, None, args, file)
    assert [learning_rate for learning_rate, _, _ in pretend_training] == [{2: 0.02, 4: 0.04}[i] for i in trained]
    assert file.written == written
    assert rows[1]['repeat_of'] == 1 and rows[1]['seed'] == original['seed']
    assert rows[1]['val_loss'] == (pretend_scores(0.5, 0, 0) if 3 in recorded else original)['val_loss']
