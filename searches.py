"""The hyperparameter searches the experiment compares, behind one ask-and-tell interface: a search of one repetition
is made from the search box, its seed, its budget and its init points; ask() returns the points it evaluates next,
tell(rows) hands it their scored results rows. METHODS names them: a new method is one class and one line there.

A guided search (Bayesian optimisation, Optuna's samplers) asks one point at a time and must be told its row before
the next; a planned one (Sobol, random, grid) ignores the scores and returns its whole plan at the first ask; a
multi-fidelity one (Hyperband) asks for a rung of configurations at a time, each point naming its configuration and
the epochs to train it to from those it had (a network continued from an earlier rung). What only some methods need
(their rows per search, the settings they refuse, the constants saved with their results) is asked of their classes,
and what a row needs is on its point, so that a new method, a multi-fidelity one too, is one class.
"""
import bisect
import functools
import itertools
import math
import random
import warnings

import numpy as np
import optuna
from bayes_opt import BayesianOptimization
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import Matern

with warnings.catch_warnings():
    warnings.simplefilter('ignore', SyntaxWarning)  # optunity 1.1.1's docstrings upset Python 3.12 and newer
    import optunity

# The value told to the optimizers for a diverged network (NaN or infinite loss): minus twice chance level, or minus
# the search's worst finite loss so far if that is higher
DIVERGED_LOSS = 2 * math.log(10)
STUDY_NAME = 'search'  # every Optuna search's study, in memory
HYPERBAND_REDUCTION_FACTOR = 3  # hyperband's eta: each rung keeps the best third, for three times the epochs

optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial; warnings and errors still show


def target(row, search_rows):
    """What an optimizer is told about a scored row: minus its validation loss, or for a diverged network minus the
    larger of DIVERGED_LOSS and the worst finite loss of the search's rows so far (never NaN: bayes_opt would store
    it, then fail at its next fit)."""
    if math.isfinite(row['val_loss']):
        return -row['val_loss']
    return -max([DIVERGED_LOSS, *(other['val_loss'] for other in search_rows if math.isfinite(other['val_loss']))])


def answered_from_cache(row, search_rows):
    """The row of a guided search's point as bayes_opt 1.0.1's maximize() answered a point it had already evaluated,
    from its cache: the scores (and network seed) of the search's earlier row at that point, `repeat_of` its
    iteration, no training time. The row unchanged if the point is new."""
    for earlier in search_rows:
        if (earlier['learning_rate'], earlier['weight_decay']) == (row['learning_rate'], row['weight_decay']):
            return {**row, 'repeat_of': earlier['iteration'], 'seed': earlier['seed'], 'seconds': 0.0,
                    **{name: earlier[name] for name in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')}}
    return row


def finite_or_inf(loss):
    """A diverged (NaN) loss ranks as the worst."""
    return loss if math.isfinite(loss) else math.inf


def seed_for(*keys):
    """A 32-bit seed derived from (seed, repetition[, iteration]): reproducible and independent of the budgets."""
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


class Search:
    """One repetition's search over `box` ({name: (low, high)}), made with its seed and budget (evaluations networks
    of `epochs` epochs, the first init_points of a guided search random): ask() -> [point, ...], each a {name: value}
    dict, [] once the budget is spent; tell(rows) -> None, the rows of the points the last ask() returned, scored, in
    their order. A repeated point's row comes answered from the row it repeats (its `repeat_of` set)."""
    planned = False  # True: the points ignore the scores, and the first ask() returns them all
    multi_fidelity = False  # True: a point may name its 'epochs', 'bracket' and 'configuration' (see HyperbandSearch)
    packages = ()  # the packages beyond the project's own whose versions decide its points (saved with the results)

    def ask(self):
        raise NotImplementedError

    def tell(self, rows):
        """Planned searches are told nothing they need."""

    @classmethod
    def refusal(cls, method, *, evaluations, epochs, ray):
        """Why this method cannot run with these settings (a one-line error), or None."""
        return None

    @classmethod
    def rows_per_search(cls, *, evaluations, epochs):
        """The results rows of one search: its evaluations."""
        return evaluations

    @classmethod
    def fixed_settings(cls):
        """The constants of the search that decide its points, saved in the configuration (another value is another
        configuration)."""
        return {}


class CentredGaussianProcess(GaussianProcessRegressor):
    """scikit-learn 0.21's GaussianProcessRegressor(normalize_y=True), which bayes_opt 1.0.1 fitted: the targets
    are centred on their mean, not also divided by their standard deviation as scikit-learn 0.23 and newer do
    (that scaling changes how much UCB's uncertainty term weighs)."""

    def fit(self, X, y):
        self.target_mean_ = float(np.mean(y))
        return super().fit(X, np.asarray(y) - self.target_mean_)

    def predict(self, X, return_std=False, return_cov=False):
        prediction = super().predict(X, return_std=return_std, return_cov=return_cov)
        if return_std or return_cov:
            return prediction[0] + self.target_mean_, prediction[1]
        return prediction + self.target_mean_


def bayesian_optimizer(box, *, seed, library=False):
    """bayes_opt's optimizer as the authors made it (default UCB acquisition, kappa 2.576), seeded, with the
    Gaussian process bayes_opt 1.0.1 fitted on scikit-learn 0.21: Matern 2.5, alpha 1e-6, centred targets, 25
    restarts of the kernel fit drawn from the optimizer's random state. library=True keeps bayes_opt 3.4's own
    (targets also scaled, 5 restarts): the 'bayesian-library' method."""
    optimizer = BayesianOptimization(f=None, pbounds=box, random_state=seed, verbose=0)
    if not library:
        # bayes_opt 3.4 has no argument for its Gaussian process: this sets its private _gp (the version is pinned,
        # and the replay test of the paper's Table II fails if an upgrade stops using it)
        optimizer._gp = CentredGaussianProcess(kernel=Matern(nu=2.5), alpha=1e-6, normalize_y=False,
                                               n_restarts_optimizer=25, random_state=optimizer._random_state)
    return optimizer


class BayesOptSearch(Search):
    """bayes_opt's Bayesian optimisation as bayes_opt 1.0.1's maximize() ran it for the authors: init_points uniform
    random points, drawn first, then one Gaussian-process (UCB) proposal per evaluation. A repeated point is not
    registered again (bayes_opt would raise). library: bayes_opt 3.4's own Gaussian process."""

    def __init__(self, box, *, seed, evaluations, init_points, epochs, library):
        self.optimizer = bayesian_optimizer(box, seed=seed, library=library)
        self.queue = self.optimizer.random_sample(init_points)
        self.evaluations, self.rows = evaluations, []

    def ask(self):
        if len(self.rows) == self.evaluations:
            return []
        self.point = self.queue.pop(0) if self.queue else self.optimizer.suggest()
        return [self.point]

    def tell(self, rows):
        self.rows += rows
        if rows[0]['repeat_of'] is None:
            self.optimizer.register(self.point, target(rows[0], self.rows))


class OptunaSearch(Search):
    """An Optuna sampler through its ask-and-tell interface, in the paper's protocol: init_points uniform random
    points first (its n_startup_trials), then one model proposal per evaluation, each told before the next is asked
    (a sampler asked for several untold trials would propose without their scores), a study in memory."""
    packages = ('optuna', 'greenlet')  # GPSampler's batched optimisation uses greenlet: its proposals differ without

    def __init__(self, box, *, seed, evaluations, init_points, epochs, sampler):
        self.study = optuna.create_study(study_name=STUDY_NAME, direction='maximize',
                                         sampler=sampler(seed=seed, n_startup_trials=init_points))
        self.distributions = {name: optuna.distributions.FloatDistribution(low, high) for name, (low, high) in
                              box.items()}
        self.evaluations, self.rows = evaluations, []

    def ask(self):
        if len(self.rows) == self.evaluations:
            return []
        self.trial = self.study.ask(self.distributions)
        return [dict(self.trial.params)]

    def tell(self, rows):
        self.rows += rows
        self.study.tell(self.trial, target(rows[0], self.rows))


def sobol_points(box, *, evaluations, seed):
    """The points optunity's quasi-random Sobol search evaluates (optunity shrinks the box to the middle 99% of each
    range), in its order: they do not depend on the scores, so they can all be known before any training (the authors
    evaluated them inside optunity's loop: the same points)."""
    points = []
    random.seed(seed)  # optunity's only randomness: its skip into the Sobol sequence, drawn from `random`
    optunity.maximize(lambda **point: points.append(point) or 0.0, num_evals=evaluations, solver_name='sobol',
                      **{name: list(bound) for name, bound in box.items()})
    return points


def random_points(box, *, evaluations, seed):
    """Uniform random search's points (the paper's Fig. 2): each coordinate uniform over its range, drawn in
    order from numpy's generator seeded with `seed`."""
    generator = np.random.default_rng(seed)
    return [{name: float(generator.uniform(low, high)) for name, (low, high) in box.items()}
            for _ in range(evaluations)]


def grid_axes(box, *, evaluations):
    """The grid search's coordinates along each side of the box: n evenly spaced values from bound to bound (both
    included exactly), for evaluations = n x n."""
    side = math.isqrt(evaluations)
    return [[float(value) for value in np.linspace(low, high, side)] for low, high in box.values()]


def grid_points(box, *, evaluations, seed):
    """The full-factorial grid (Bergstra and Bengio's baseline): every pair of grid_axes' values, the first
    coordinate (the learning rate's) outer, the second inner. The seed plays no part: a repetition is a replica."""
    first, second = grid_axes(box, evaluations=evaluations)
    names = list(box)
    return [{names[0]: a, names[1]: b} for a in first for b in second]


class PlannedSearch(Search):
    """A search whose points(box, evaluations=, seed=) ignore the scores: all returned by the first ask()."""
    planned = True

    def __init__(self, box, *, seed, evaluations, init_points, epochs, points):
        self.points = points(box, evaluations=evaluations, seed=seed)

    def ask(self):
        points, self.points = self.points, []
        return points


class GridSearch(PlannedSearch):
    """Grid search: n x n points evenly spaced over the box in the coordinates the searches see (grid_points), in a
    fixed order; its repetitions train the same points with other network seeds. A finished grid run with curves is
    a benchmark table (table.py)."""

    @classmethod
    def refusal(cls, method, *, evaluations, epochs, ray):
        side = math.isqrt(evaluations)
        if side < 2 or side * side != evaluations:
            nearest = sorted({max(side, 2) ** 2, (max(side, 1) + 1) ** 2})
            return (f'--evaluations {evaluations} is not a square for {method}: it trains an n x n grid (n >= 2), '
                    f'such as {" or ".join(map(str, nearest))}')
        return None


@functools.cache  # a pure function, asked for each search and each results file read
def hyperband_brackets(max_epochs, budget, reduction_factor):
    """Synchronous Hyperband's brackets (Li et al., JMLR 2018) for networks of at most max_epochs epochs, until
    `budget` model-epochs are spent: [[(configurations, epochs), ...], ...], each bracket's rungs in order. The
    brackets run s = s_max ... 0 and repeat; bracket s starts n = ceil((s_max + 1) / (s + 1) * eta^s) configurations
    for max_epochs / eta^s epochs (rounded, 1 or more), and each rung keeps the best floor(n_i / eta) for eta times the
    epochs. A kept network continues from its weights, so a rung costs its networks' added epochs. The last bracket is
    cut to the most configurations whose whole bracket the budget left pays for, each rung keeping at least one; the
    search ends when not even one configuration trained for max_epochs fits."""
    eta, s_max = reduction_factor, 0
    while eta ** (s_max + 1) <= max_epochs:
        s_max += 1

    def rungs(s, count):
        return [(max(count // eta ** i, 1), max(round(max_epochs / eta ** (s - i)), 1)) for i in range(s + 1)]

    def cost(bracket):
        return sum(kept * (epochs - before) for (kept, epochs), (_, before) in zip(bracket, [(0, 0), *bracket]))
    brackets, left = [], budget
    for s in itertools.cycle(range(s_max, -1, -1)):
        full = -(-(s_max + 1) * eta ** s // (s + 1))
        # the most configurations the budget left pays for (a bracket's cost grows with them)
        count = bisect.bisect_right(range(1, full + 1), left, key=lambda count: cost(rungs(s, count)))
        if count == 0:
            return tuple(brackets)
        brackets.append(tuple(rungs(s, count)))
        left -= cost(brackets[-1])


class HyperbandSearch(Search):
    """Synchronous Hyperband (eta = reduction_factor) at the same model-epochs as every other search (evaluations x
    epochs; see hyperband_brackets). Each ask() returns one rung: its points name their 'bracket', 'configuration'
    (numbered in the search from 1) and 'epochs', those to train the network to, continuing from its weights at its
    last rung, and 'epochs_before', those it trained to at that rung (0 at its first). Each bracket draws its
    configurations uniformly at random from the box, in order, from one generator seeded with the search's seed (so
    the first are random search's). A rung keeps its best by validation loss, a
    diverged network last, ties by the earlier row. Written here because Optuna's pruners and Ray Tune's schedulers
    decide asynchronously, trial by trial, in the order the scores arrive: here a rung is decided once all its
    networks are scored, so it does not depend on how they are trained."""
    multi_fidelity = True
    reduction_factor = HYPERBAND_REDUCTION_FACTOR

    def __init__(self, box, *, seed, evaluations, init_points, epochs):
        self.brackets = hyperband_brackets(epochs, evaluations * epochs, self.reduction_factor)
        self.rounds = sum(map(len, self.brackets))  # its asks, one rung each
        self.draws = iter(random_points(box, evaluations=sum(rungs[0][0] for rungs in self.brackets), seed=seed))
        self.bracket, self.rung, self.points, self.configurations = 0, 0, [], 0

    def ask(self):
        if self.bracket == len(self.brackets):
            return []
        count, epochs = self.brackets[self.bracket][self.rung]
        if self.rung == 0:
            self.points = [{**next(self.draws), 'bracket': self.bracket + 1,
                            'configuration': self.configurations + number} for number in range(1, count + 1)]
            self.configurations += count
        before = self.brackets[self.bracket][self.rung - 1][1] if self.rung else 0
        self.points = [{**point, 'epochs': epochs, 'epochs_before': before} for point in self.points]
        return self.points

    def tell(self, rows):
        self.rung += 1
        if self.rung == len(self.brackets[self.bracket]):
            self.bracket, self.rung = self.bracket + 1, 0
            return
        ranked = sorted(zip(rows, self.points), key=lambda pair: (finite_or_inf(pair[0]['val_loss']),
                                                                  pair[0]['iteration']))
        kept = [point for _, point in ranked[:self.brackets[self.bracket][self.rung][0]]]
        self.points = sorted(kept, key=lambda point: point['configuration'])

    @classmethod
    def refusal(cls, method, *, evaluations, epochs, ray):
        if epochs < cls.reduction_factor:
            return (f'--epochs {epochs} is too few for {method}: at least {cls.reduction_factor}, its reduction '
                    f'factor (1 epoch, then {cls.reduction_factor})')
        if ray:
            return f'--ray cannot train {method}: its networks continue from weights saved on this machine'
        return None

    @classmethod
    def rows_per_search(cls, *, evaluations, epochs):
        """Its scorings: every configuration of every rung."""
        return sum(count for rungs in hyperband_brackets(epochs, evaluations * epochs, cls.reduction_factor)
                   for count, _ in rungs)

    @classmethod
    def fixed_settings(cls):
        return {'hyperband_reduction_factor': cls.reduction_factor}


# The methods, in the order --help lists them: each makes a search from (box, seed=, evaluations=, init_points=,
# epochs=)
METHODS = {
    'bayesian': functools.partial(BayesOptSearch, library=False),  # the authors' Gaussian process
    'bayesian-library': functools.partial(BayesOptSearch, library=True),  # bayes_opt 3.4's own
    'tpe': functools.partial(OptunaSearch, sampler=optuna.samplers.TPESampler),  # multivariate, constant liar
    'gp': functools.partial(OptunaSearch, sampler=optuna.samplers.GPSampler),  # Matern 5/2 with ARD, log EI
    'sobol': functools.partial(PlannedSearch, points=sobol_points),  # optunity's, as the paper
    'random': functools.partial(PlannedSearch, points=random_points),  # uniform
    'grid': functools.partial(GridSearch, points=grid_points),  # full-factorial, n x n
    'hyperband': HyperbandSearch,  # multi-fidelity
}


def search_class(method):
    """The Search subclass behind a method's name."""
    make = METHODS[method]
    return getattr(make, 'func', make)


def packages(methods):
    """The extra packages (Search.packages) the searches of these methods need, in the order METHODS lists them."""
    return tuple(dict.fromkeys(package for method in methods for package in search_class(method).packages))


def is_guided(method):
    """Whether a method's search is guided by a model of the scores (neither planned nor multi-fidelity): its first
    init_points evaluations are random, and it may propose a point again."""
    return not (search_class(method).planned or search_class(method).multi_fidelity)


def fixed_settings(methods):
    """The constants of these methods' searches that decide their points (Search.fixed_settings), saved in the
    configuration."""
    return {name: value for method in methods for name, value in search_class(method).fixed_settings().items()}


def is_multi_fidelity(method):
    """Whether a method's search trains networks for fewer epochs than --epochs (Hyperband)."""
    return search_class(method).multi_fidelity
