"""Bayesian optimisation against quasi-random Sobol search for the learning rate and weight decay of a
LeNet-5-style CNN: a reproduction of "Hyperparameters tuning for Convolutional Neural Network based on Global
Optimization" (J. Bartoli, I. Erpichini), with uniform random search as an extra baseline.

Edit the constants at the top of this file or override them with flags. Every evaluation is appended
to the output CSV as soon as it ends, and the same command run again resumes a stopped run; after each
method its searches' tables (the paper's Table II) are printed, and at the end the mean and standard
deviation over repetitions (the paper's Table I) with statistics below it. Summaries (JSON, Markdown) and
plots are written beside the CSV; --report rebuilds them from a results file without training.
"""
import stopping  # imports only the standard library: a stop while the libraries below load is one line

if __name__ == '__main__':
    stopping.exit_while_starting('nothing was written')

import argparse
import math
import os
import random
import warnings

import numpy as np
import torch
from bayes_opt import BayesianOptimization
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import Matern
from tqdm import tqdm

with warnings.catch_warnings():
    warnings.simplefilter('ignore', SyntaxWarning)  # optunity 1.1.1's docstrings upset Python 3.12 and newer
    import optunity

import command_line
import files
import network
import report
import results

# The paper's experiment: the defaults of the flags (python test.py --help)
DATASET = 'cifar10'  # 'cifar10' or 'mnist' as in the paper; 'digits' is the offline quick-start
# The searches to run (their tables in this order): 'bayesian', 'sobol' (the paper's), 'bayesian-library'
# (bayes_opt 3.4's own Gaussian process), 'random'
METHODS = ('bayesian', 'sobol')
LEARNING_RATE_BOUNDS = (0.0001, 0.1)  # the search box
WEIGHT_DECAY_BOUNDS = (0, 0.001)
LR_SCALE = 'linear'  # as in the paper; 'log': the searches see log10 of the learning rate
EVALUATIONS = 25  # trained networks per search
INIT_POINTS = 5  # Bayesian search: random points before the Gaussian process proposes
EPOCHS = 50  # training epochs of every evaluated network
REPETITIONS = 10  # independent repetitions of each search
BATCH_SIZE = 64  # for training, validation and test
VALIDATION_SIZE = None  # the last images of the training set; None: 10,000 (cifar10, mnist), 360 (digits)
SEED = 0  # seeds every search and every network (see seed_for)
# Most networks trained at once, in lockstep (memory grows with it); 1: one at a time. None: 250 on a GPU (all the
# Sobol points of the experiment at once), 10 on CPU (as fast as 20 there, with half the memory; 5 and 50 are slower).
POPULATION = None
# When the Sobol and random points train, with populations (their points do not depend on the scores): 'after' the
# Bayesian searches, in populations of up to POPULATION; or in 'rounds', a share alongside each round of the
# Bayesian searches (faster only where a population's step costs little more for more members: see README, Speed)
SCHEDULE = 'after'
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
# Train the populations on a Ray cluster: 'auto' (the one running here), 'local' (start one on this machine) or
# HOST:PORT (its head); None: on this machine, without Ray
RAY = None
# With --ray on CPU: the CPUs (torch threads) of each worker that trains a population; None: 4 (a node's CPUs where it
# has fewer)
RAY_WORKER_CPUS = None
DATA_DIR = 'data'  # where the datasets are, or are downloaded to
OUTPUT = 'results.csv'  # one row per evaluation; rerunning the same command resumes it
# The loss told to the optimizers for a diverged network (NaN or infinite loss): twice chance level,
# or the search's worst finite loss so far if that is higher.
DIVERGED_LOSS = 2 * math.log(10)
LARGEST_BOUND = network.LARGEST_HYPERPARAMETER  # of either range: float32's largest, the networks' arithmetic
# A run plans every evaluation and holds its rows in memory before the first trains (the paper's run has 500)
MOST_EVALUATIONS = 100_000  # in all: methods x repetitions x evaluations
# A Bayesian search fits its Gaussian process on all its evaluations: n x n matrices, about 32 n^2 bytes with the
# kernel's gradient (800 MB at 5,000)
MOST_BAYESIAN_EVALUATIONS = 5_000

METHOD_NAMES = ('bayesian', 'bayesian-library', 'sobol', 'random')
SCHEDULE_NAMES = ('after', 'rounds')
# What decides the results' numbers, saved beside the CSV and checked on resume (besides the library versions)
CONFIGURATION_SETTINGS = ('dataset', 'validation_size', 'method', 'learning_rate_bounds', 'weight_decay_bounds',
                          'lr_scale', 'evaluations', 'init_points', 'epochs', 'repetitions', 'batch_size', 'seed')


def parse_methods(text):
    """'bayesian,sobol,random' (any of METHOD_NAMES, comma-separated; 'both': bayesian,sobol) -> the methods to run."""
    methods = ('bayesian', 'sobol') if text == 'both' else tuple(text.split(','))
    for method in methods:
        if method not in METHOD_NAMES:
            raise argparse.ArgumentTypeError(f'invalid method {method!r} (choose from {", ".join(METHOD_NAMES)}, '
                                             'comma-separated, or both)')
    if len(set(methods)) < len(methods):
        raise argparse.ArgumentTypeError(f'method list {text!r} names a method twice')
    return methods


def build_parser(*, raising=False):
    parser = command_line.ArgumentParser(description=__doc__, formatter_class=command_line.HelpFormatter,
                                         raising=raising)
    command_line.add_data_arguments(parser, dataset=DATASET, data_dir=DATA_DIR, validation_size=VALIDATION_SIZE,
                                    batch_size=BATCH_SIZE, device=DEVICE)
    parser.add_argument('--method', type=parse_methods, default=METHODS, metavar='METHOD[,METHOD...]',
                        help="the searches to run (their tables in this order): bayesian (the authors' Gaussian "
                             "process), bayesian-library (bayes_opt 3.4's own), sobol, random (uniform), "
                             'comma-separated; both: bayesian,sobol')
    parser.add_argument('--evaluations', type=int, default=EVALUATIONS, help='trained networks per search')
    parser.add_argument('--init-points', type=int, default=INIT_POINTS,
                        help='Bayesian search: random evaluations before the Gaussian process proposes')
    parser.add_argument('--epochs', type=int, default=EPOCHS, help='training epochs per evaluation')
    parser.add_argument('--repetitions', type=int, default=REPETITIONS, help='independent runs of each search')
    parser.add_argument('--learning-rate-bounds', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                        default=LEARNING_RATE_BOUNDS, help='the learning-rate range searched')
    parser.add_argument('--weight-decay-bounds', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                        default=WEIGHT_DECAY_BOUNDS, help='the weight-decay range searched')
    parser.add_argument('--lr-scale', choices=('linear', 'log'), default=LR_SCALE,
                        help='the scale the searches see the learning rate on')
    parser.add_argument('--seed', type=int, default=SEED, help='seeds every search and network')
    parser.add_argument('--population', type=int, default=POPULATION,
                        help='most networks trained at once as one population (None: 250 on a GPU, 10 on CPU); '
                             "1 trains one network at a time (Sobol: inside optunity's own loop)")
    parser.add_argument('--schedule', choices=SCHEDULE_NAMES, default=SCHEDULE,
                        help='with populations, when the Sobol and random points train: after the Bayesian searches, '
                             'or a share alongside each of their rounds')
    parser.add_argument('--ray', default=RAY, metavar='ADDRESS',
                        help="train on a Ray cluster: auto (the one running here), local (start one here), HOST:PORT")
    parser.add_argument('--ray-worker-cpus', type=int, default=RAY_WORKER_CPUS,
                        help="with --ray on CPU: the CPUs of each worker that trains a population (None: 4, or a "
                             "node's CPUs where it has fewer)")
    parser.add_argument('--output', default=OUTPUT,
                        help='the results CSV, one row per evaluation; if it exists, the run resumes it')
    parser.add_argument('--fresh', action='store_true',
                        help='start over: move an existing results file, its configuration, summaries and plots aside '
                             '(never deleted)')
    parser.add_argument('--quiet', action='store_true',
                        help='no progress: no progress bars (shown on a terminal), no line per evaluation (otherwise)')
    parser.add_argument('--report', metavar='FILE',
                        help='train nothing: print the tables of results file FILE and write its summaries and plots '
                             '(its settings come from its configuration file; other flags but --quiet are ignored)')
    return parser


def check_arguments(parser, args):
    """End with a one-line error (exit status 2) for any value outside what is allowed."""
    command_line.check_data_arguments(parser, args, device_here=args.ray is None)  # with Ray, on the workers
    unknown = [method for method in args.method if method not in METHOD_NAMES]  # in METHODS, edited by hand
    if unknown:
        parser.error(f'unknown method {unknown[0]!r}: choose from {", ".join(METHOD_NAMES)}')
    if args.population is None:
        args.population = default_population(args.device)
    command_line.check_positive_integers(parser, args, 'evaluations', 'epochs', 'repetitions', 'population')
    if args.ray_worker_cpus is not None:
        command_line.check_positive_integers(parser, args, 'ray_worker_cpus')
    if report.has_bayesian(args.method) and not 1 <= args.init_points <= args.evaluations:
        parser.error(f'--init-points {args.init_points} must be between 1 and --evaluations ({args.evaluations})')
    for name in ('learning_rate_bounds', 'weight_decay_bounds'):
        low, high = getattr(args, name)
        if not 0 <= low < high <= LARGEST_BOUND:
            parser.error(f'{command_line.flag(name)} {low:g} {high:g}: the bounds must satisfy 0 <= LOW < HIGH '
                         f'<= {LARGEST_BOUND:g}')
    if args.lr_scale == 'log' and args.learning_rate_bounds[0] == 0:
        parser.error('--lr-scale log needs a positive --learning-rate-bounds LOW (it is 0)')
    if args.seed < 0:
        parser.error(f'--seed {args.seed} must be a non-negative integer')
    if args.ray == '':
        parser.error("--ray '' is not an address: use auto, local or HOST:PORT")
    if args.ray_worker_cpus is not None and args.ray is None:
        parser.error(f'--ray-worker-cpus {args.ray_worker_cpus} needs --ray: without it the networks train here')
    check_budget(parser, args)


def check_budget(parser, args):
    """End with a one-line error for a budget the run cannot plan and hold (MOST_EVALUATIONS in all,
    MOST_BAYESIAN_EVALUATIONS per Bayesian search), before anything is planned or written."""
    total = len(args.method) * args.repetitions * args.evaluations
    if total > MOST_EVALUATIONS:
        parser.error(f'{len(args.method)} methods x --repetitions {args.repetitions} x --evaluations '
                     f'{args.evaluations} is {total:,} evaluations: at most {MOST_EVALUATIONS:,} in one run (each is '
                     'planned and held in memory before the first trains)')
    if report.has_bayesian(args.method) and args.evaluations > MOST_BAYESIAN_EVALUATIONS:
        parser.error(f'--evaluations {args.evaluations} is too many for a Bayesian search: at most '
                     f'{MOST_BAYESIAN_EVALUATIONS:,} (its Gaussian process holds n x n matrices of all of them)')


def default_population(device):
    """POPULATION's None: 250 on a GPU (all the Sobol points of the paper's experiment at once), 10 on CPU."""
    return 250 if torch.device(device).type == 'cuda' else 10


def seed_for(*keys):
    """A 32-bit seed derived from (seed, repetition[, iteration]): reproducible and independent of the budgets."""
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


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


def bayesian_optimizer(bounds, *, seed, library=False):
    """bayes_opt's optimizer as the authors made it (default UCB acquisition, kappa 2.576), seeded, with the
    Gaussian process bayes_opt 1.0.1 fitted on scikit-learn 0.21: Matern 2.5, alpha 1e-6, centred targets, 25
    restarts of the kernel fit drawn from the optimizer's random state. library=True keeps bayes_opt 3.4's own
    (targets also scaled, 5 restarts): the 'bayesian-library' method."""
    optimizer = BayesianOptimization(f=None, pbounds=bounds, random_state=seed, verbose=0)
    if not library:
        # bayes_opt 3.4 has no argument for its Gaussian process: this sets its private _gp (the version is pinned,
        # and the replay test of the paper's Table II fails if an upgrade stops using it)
        optimizer._gp = CentredGaussianProcess(kernel=Matern(nu=2.5), alpha=1e-6, normalize_y=False,
                                               n_restarts_optimizer=25, random_state=optimizer._random_state)
    return optimizer


def sobol_search(objective, bounds, *, evaluations, seed):
    """optunity's quasi-random Sobol search (optunity shrinks the box to the middle 99% of each range)."""
    random.seed(seed)  # optunity's only randomness: its skip into the Sobol sequence, drawn from `random`
    optunity.maximize(objective, num_evals=evaluations, solver_name='sobol',
                      **{name: list(bound) for name, bound in bounds.items()})


def sobol_points(bounds, *, evaluations, seed):
    """The points sobol_search evaluates, in its order: they do not depend on the scores, so they can all be known
    before any training."""
    points = []
    sobol_search(lambda **point: points.append(point) or 0.0, bounds, evaluations=evaluations, seed=seed)
    return points


def random_points(bounds, *, evaluations, seed):
    """Uniform random search's points (the paper's Fig. 2): each coordinate uniform over its range, drawn in
    order from numpy's generator seeded with `seed`."""
    generator = np.random.default_rng(seed)
    return [{name: float(generator.uniform(low, high)) for name, (low, high) in bounds.items()}
            for _ in range(evaluations)]


PLANNED_POINTS = {'sobol': sobol_points, 'random': random_points}  # the searches whose points ignore the scores


def search_box(args):
    """The box the optimizers search: the learning rate's range, or with --lr-scale log its log10's, and the
    weight decay's."""
    learning_rate = tuple(args.learning_rate_bounds)
    if args.lr_scale == 'log':
        return {'log10_learning_rate': tuple(map(math.log10, learning_rate)),
                'weight_decay': tuple(args.weight_decay_bounds)}
    return {'learning_rate': learning_rate, 'weight_decay': tuple(args.weight_decay_bounds)}


def new_row(method, repetition, iteration, point, args):
    """A results row before training: which evaluation it is, its network's seed and the hyperparameters of its
    point of search_box."""
    if 'log10_learning_rate' in point:  # kept inside the bounds, which 10 ** log10(bound) can overshoot
        low, high = args.learning_rate_bounds
        learning_rate = min(max(10 ** point['log10_learning_rate'], low), high)
    else:
        learning_rate = point['learning_rate']
    return dict(method=method, repetition=repetition, iteration=iteration, repeat_of=None,
                seed=seed_for(args.seed, repetition, iteration),
                learning_rate=float(learning_rate), weight_decay=float(point['weight_decay']))  # not numpy floats


def optimizer_target(row, search_rows):
    """What the optimizer is told about a trained row: minus its validation loss, or for a diverged network
    minus the larger of DIVERGED_LOSS and the worst finite loss so far in its search (never NaN: bayes_opt
    would store it, then fail at its next fit)."""
    if math.isfinite(row['val_loss']):
        return -row['val_loss']
    return -max([DIVERGED_LOSS, *report.finite_losses(search_rows)])


def answered_from_cache(row, search_rows):
    """The row as bayes_opt 1.0.1's maximize() answered a point it had already evaluated, from its cache: the
    scores (and network seed) of the search's earlier row at that point, `repeat_of` its iteration, no training
    time. The row unchanged if the point is new."""
    for earlier in search_rows:
        if (earlier['learning_rate'], earlier['weight_decay']) == (row['learning_rate'], row['weight_decay']):
            return {**row, 'repeat_of': earlier['iteration'], 'seed': earlier['seed'],
                    **{name: earlier[name] for name in results.SCORE_COLUMNS}, 'seconds': 0.0}
    return row


def sobol_search_one_at_a_time(repetition, training, args, results_file):
    """One Sobol search as the authors ran it: one network at a time, inside optunity's own loop."""
    rows = []

    def objective(**point):
        rows.extend(score_and_record([new_row('sobol', repetition, len(rows) + 1, point, args)], training, args,
                                     results_file))
        return optimizer_target(rows[-1], rows)
    sobol_search(objective, search_box(args), evaluations=args.evaluations, seed=seed_for(args.seed, repetition))
    return rows


def planned_rows(method, args):
    """Every repetition's rows of a Sobol or random search, before training: their points do not depend on the
    scores."""
    return [new_row(method, repetition, iteration, point, args) for repetition in range(1, args.repetitions + 1)
            for iteration, point in enumerate(PLANNED_POINTS[method](search_box(args), evaluations=args.evaluations,
                                                                     seed=seed_for(args.seed, repetition)), 1)]


def lockstep_searches(methods, repetitions, planned, training, args, results_file):
    """The repetitions' Bayesian searches of every method in `methods`, in lockstep rounds, each search as bayes_opt
    1.0.1's maximize() ran it: init_points uniform random points, then one Gaussian-process (UCB) proposal per
    evaluation. Each round trains the searches' new points together with the next even share of the `planned`
    rows (Sobol and random points, which do not depend on the scores), in populations; a repeated point is
    answered from its earlier row and not told to the Gaussian process again (bayes_opt would raise), but uses up
    its evaluation. Returns the searches' rows, then the planned ones."""
    searches = [(method, repetition) for method in methods for repetition in repetitions]
    optimizers = [bayesian_optimizer(search_box(args), seed=seed_for(args.seed, repetition),
                                     library=method == 'bayesian-library') for method, repetition in searches]
    queues = [optimizer.random_sample(args.init_points) for optimizer in optimizers]  # drawn first, as maximize()
    search_rows = [[] for _ in searches]
    for iteration in range(1, args.evaluations + 1):
        points = [queue.pop(0) if queue else optimizer.suggest() for optimizer, queue in zip(optimizers, queues)]
        proposed = [answered_from_cache(new_row(method, repetition, iteration, point, args), search)
                    for (method, repetition), point, search in zip(searches, points, search_rows)]
        share = planned[len(planned) * (iteration - 1) // args.evaluations:len(planned) * iteration // args.evaluations]
        score_and_record(proposed + share, training, args, results_file)
        for optimizer, point, search, row in zip(optimizers, points, search_rows, proposed):
            search.append(row)
            if row['repeat_of'] is None:
                optimizer.register(point, optimizer_target(row, search))
    return [row for search in search_rows for row in search] + planned


def one_at_a_time_searches(method, training, args, results_file):
    """Every repetition of one method's search, one network at a time (--population 1), as the authors ran them."""
    repetitions = range(1, args.repetitions + 1)
    if method in report.BAYESIAN_METHODS:
        return [row for repetition in repetitions
                for row in lockstep_searches([method], [repetition], [], training, args, results_file)]
    if method == 'sobol':
        return [row for repetition in repetitions
                for row in sobol_search_one_at_a_time(repetition, training, args, results_file)]
    return score_and_record(planned_rows(method, args), training, args, results_file)


def run_searches(training, args, results_file):
    """Every repetition of every method's search. With --population 1 one network at a time, method after method
    (with --ray, in rounds as below). Otherwise in populations: the Bayesian searches (all methods and repetitions)
    advance in lockstep rounds, and the Sobol and random points train after them (--schedule after) or a share
    alongside each round (rounds), so that they add no round to the Bayesian searches' critical path. On resume,
    the searches run again from their seeds and evaluations the results file records are read, not trained, so
    the optimizers see exactly what they saw before."""
    if args.population == 1 and not args.ray:
        return [row for method in args.method for row in one_at_a_time_searches(method, training, args, results_file)]
    planned = [row for method in args.method if method in PLANNED_POINTS for row in planned_rows(method, args)]
    bayesian = [method for method in args.method if method in report.BAYESIAN_METHODS]
    repetitions = range(1, args.repetitions + 1)
    if bayesian and args.schedule == 'rounds':
        return lockstep_searches(bayesian, repetitions, planned, training, args, results_file)
    bayesian_rows = lockstep_searches(bayesian, repetitions, [], training, args, results_file) if bayesian else []
    return bayesian_rows + score_and_record(planned, training, args, results_file)


def train_networks(rows, splits, args, *, progress):
    """The scores of the rows' networks: trained alone (--population 1) or as one population; `progress`: show a
    bar over the epochs of a long training."""
    if args.population == 1:
        return [network.train_and_evaluate(splits, seed=row['seed'], learning_rate=row['learning_rate'],
                                           weight_decay=row['weight_decay'], epochs=args.epochs,
                                           batch_size=args.batch_size, progress=progress) for row in rows]
    return network.train_and_evaluate_population(
        splits, seeds=[row['seed'] for row in rows], learning_rates=[row['learning_rate'] for row in rows],
        weight_decays=[row['weight_decay'] for row in rows], epochs=args.epochs, batch_size=args.batch_size,
        progress=progress)


class LocalTraining:
    """Trains rows' networks on this machine, on the splits loaded once (cluster.RayTraining: on a Ray cluster)."""

    def __init__(self, splits, args):
        self.splits, self.args = splits, args

    def start(self, rows):
        """A function that trains the rows' networks when called and returns their scores."""
        return lambda: train_networks(rows, self.splits, self.args, progress=report.bars_shown(self.args))


def score_and_record(rows, training, args, results_file):
    """Fill in the rows' scores, in populations of at most args.population networks: from the results file where
    it records them, else by training; and append each population's new rows to it, in order. Every population to
    train is started first (on a Ray cluster they then train at once; here each trains when its turn comes). A row
    that comes with scores (a repeated Bayesian point) is recorded, not trained. A population that the file holds
    in part (the run was stopped while writing it) is retrained whole, as an uninterrupted run trains it, and its
    recorded rows kept."""
    populations = [rows[start:start + args.population] for start in range(0, len(rows), args.population)]
    recorded = [[results_file.recorded_scores(row) for row in population] for population in populations]
    started = []  # per population: the rows it trains (a repeat comes with its scores), and a wait for their scores
    for population, olds in zip(populations, recorded):
        untrained = [row for row in population if row['repeat_of'] is None]
        if any(old is None for row, old in zip(population, olds) if row['repeat_of'] is None):
            started.append((untrained, training.start(untrained)))
        else:
            started.append(([], lambda: []))  # all recorded: nothing to train
    for population, olds, (untrained, scores) in zip(populations, recorded, started):
        for row, row_scores in zip(untrained, scores()):
            row.update(row_scores)
        for row, old in zip(population, olds):
            row.update(old or {})
        results_file.append([row for row, old in zip(population, olds) if old is None])
    return rows


def in_method_order(rows, args):
    """The rows by method (in args.method's order), repetition and iteration: a populations' run and its file
    hold the methods' rows interleaved."""
    return sorted(rows, key=lambda row: (args.method.index(row['method']), row['repetition'], row['iteration']))


def search_tables(rows, args):
    """The paper's Table II of every search in `rows`, in method order."""
    rows = in_method_order(rows, args)
    return [report.search_table(search, init_points=args.init_points, epochs=args.epochs,
                                search_seed=seed_for(args.seed, repetition))
            for (_, repetition), search in report.searches(rows).items()]


def print_search_tables(rows, args):
    """Print search_tables(rows, args) without breaking a progress bar on the terminal."""
    with tqdm.external_write_mode():  # clears a progress bar while the tables are printed
        for table in search_tables(rows, args):
            report.print_table(table)


def report_results(rows, args, configuration, output):
    """Print Table I and the statistics below it; write the summaries (with every search's Table II) and the
    plots beside `output`."""
    rows = in_method_order(rows, args)
    tables = [report.summary_table(rows, args.method),
              report.best_so_far_table(report.best_so_far_summary(rows, args.method, args.evaluations),
                                       args.evaluations)]
    comparisons = report.method_comparisons(rows, args.method, args.evaluations)
    if comparisons:  # two methods or more
        tables.append(report.comparison_table(comparisons))
    for table in tables:
        report.print_table(table)
    report.write_summaries(rows, args, configuration, tables + search_tables(rows, args), output)
    paths = report.report_paths(output)
    report.plot_convergence(rows, args, paths['convergence'])
    report.plot_points(rows, args, paths['points'])
    unit_square, count = {'x': (0, 1), 'y': (0, 1)}, report.UNIT_SQUARE_POINTS
    report.plot_unit_square(
        {f'{count} Sobol points (optunity, as its search draws them)': sobol_points(unit_square, evaluations=count,
                                                                                     seed=seed_for(args.seed, 1)),
         f'{count} uniform random points': random_points(unit_square, evaluations=count, seed=seed_for(args.seed, 1))},
        paths['sobol-vs-random'])
    print(f'\nwritten: {", ".join(paths.values())}', flush=True)


def run_settings(args):
    """The settings saved beside the results CSV and checked on resume."""
    return {name: value for name, value in vars(args).items() if name in CONFIGURATION_SETTINGS}


def results_plan(args):
    """What the results file checks its rows against."""
    return results.Plan(methods=args.method, repetitions=args.repetitions, evaluations=args.evaluations,
                        learning_rate_bounds=args.learning_rate_bounds, weight_decay_bounds=args.weight_decay_bounds,
                        network_seed=lambda repetition, iteration: seed_for(args.seed, repetition, iteration))


def saved_arguments(saved, path, data_dir):
    """The arguments of the run that saved configuration `saved` beside results file `path`, with its data in
    `data_dir`: its settings parsed and checked as their flags are, so that --report and a resume accept the same
    configurations. ValueError (one line) naming the first setting that is missing or not allowed."""
    missing = [name for name in CONFIGURATION_SETTINGS if name not in saved]
    if missing:
        raise ValueError(f'{path}: its configuration has no {", ".join(missing)}')
    parser = build_parser(raising=True)
    parser.prog = f'{path}: its configuration'
    method = ','.join(map(str, saved['method'])) if isinstance(saved['method'], list) else saved['method']
    settings = {**{name: saved[name] for name in CONFIGURATION_SETTINGS}, 'method': method}
    args = parser.parse_args([*command_line.arguments_for(settings, two_values=('learning_rate_bounds',
                                                                                'weight_decay_bounds')),
                              f'--output={path}', f'--data-dir={data_dir}'])
    check_arguments(parser, args)
    written = results.as_saved(run_settings(args))
    for name in CONFIGURATION_SETTINGS:  # the flags read '1' as 1: the configuration holds what a run wrote
        if not results.same_value(saved[name], written[name]):
            raise ValueError(f'{path}: its configuration holds {name} {saved[name]!r}, where a run writes '
                             f'{written[name]!r}')
    return args


def report_file(parser, args):
    """--report FILE: print the tables of a results file and write its summaries and plots, with the settings
    its configuration file saved (checked as the flags are); nothing is trained."""
    path, quiet = args.report, args.quiet
    try:
        results.check_path(path, fresh=False)  # its summaries and plots are written beside it
        saved = results.read_configuration(results.configuration_path(path))
        results.check_format(path, saved)
        args = saved_arguments(saved, path, os.path.dirname(path) or '.')  # it loads no data: any readable folder
    except (results.ResultsFileError, ValueError) as error:
        parser.error(f'--report: {error}')
    args.quiet = quiet
    try:
        rows = list(results.read(path, results_plan(args))[0].values())
    except OSError as error:
        parser.error(f'--report {path} cannot be read ({error.strerror})')
    except ValueError as error:
        parser.error(f'--report: {error}')
    if not rows:
        parser.error(f'--report {path}: the file records no evaluation yet')
    try:
        print_search_tables(rows, args)
        report_results(rows, args, saved, path)
    except files.WriteError as error:
        parser.fail(1, f'--report: {error}; its previous version is kept')
    except KeyboardInterrupt:
        parser.fail(stopping.exit_status(), '--report: the summaries and plots it wrote are whole, the others as '
                                            'they were', kind='interrupted')


def ray_training(parser, args):
    """--ray: join the cluster (Ray is imported only then) to train there. One line and exit status 2 if it cannot
    be reached or has no worker that fits, 1 if a worker cannot load the dataset or training there fails."""
    try:
        import cluster
        training = cluster.connect(args.ray, train_networks, args, fail=lambda message: parser.fail(1, message))
    except cluster.ClusterError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        parser.fail(stopping.exit_status(), 'nothing was written', kind='interrupted')
    print(training.description, flush=True)
    return training


def check_planned_points(results_file, args):
    """ResumeMismatchError if the results file records a Sobol or random point other than the search's: their
    points do not depend on the scores, so they are all checked before anything is trained."""
    for method in PLANNED_POINTS.keys() & set(args.method):
        for row in planned_rows(method, args):
            results_file.recorded_scores(row)


def main(argv=None, *, splits=None):
    """Run the experiment the flags in `argv` describe (sys.argv's by default); `splits`: train on these instead of
    loading --dataset (bench.py --experiment's synthetic images)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.report:
        return report_file(parser, args)
    check_arguments(parser, args)
    training = ray_training(parser, args) if args.ray else None  # else LocalTraining, once the data is loaded
    try:
        results_file = results.open_results(
            args.output, run_settings(args), results_plan(args),
            training.device_name if args.ray else network.device_name(args.device),
            saved_settings=lambda saved: run_settings(saved_arguments(saved, args.output, args.data_dir)),
            fresh=args.fresh)
    except results.ResultsFileError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        parser.fail(stopping.exit_status(), 'nothing was written', kind='interrupted')
    with results_file:  # locked until the run ends
        try:
            check_planned_points(results_file, args)
        except results.ResumeMismatchError as error:
            parser.error(str(error))
        except KeyboardInterrupt as error:
            end_run(parser, error, results_file, 'run the same command again to resume')
        print('\n'.join(f'{name:<21} {value}' for name, value in vars(args).items()), flush=True)
        if results_file.recorded:
            print(f'resuming {args.output}: {len(results_file.recorded)} of {results_file.plan.total} evaluations '
                  'are recorded', flush=True)
        try:
            if not args.ray:
                training = LocalTraining(command_line.load_data(parser, args) if splits is None else splits, args)
            if args.fresh:
                for old, new in results.move_aside(args.output):
                    print(f'moved {old} aside to {new}', flush=True)
            with report.Progress(args, list(results_file.recorded.values())) as progress:
                results_file.on_append = progress.show  # it needs the recorded rows, known once the file is open
                rows = run_searches(training, args, results_file)
                print_search_tables(rows, args)
        except (KeyboardInterrupt, files.WriteError) as error:
            end_run(parser, error, results_file, 'run the same command again to resume')
        except results.ResumeMismatchError as error:
            parser.fail(1, str(error))
        try:
            report_results(rows, args, results_file.configuration, args.output)
        except (KeyboardInterrupt, files.WriteError) as error:
            end_run(parser, error, results_file, f'python test.py --report {args.output} writes the summaries and '
                                                 'plots')


def end_run(parser, error, results_file, then):
    """End a run that was stopped (Ctrl-C, SIGTERM, SIGHUP: exit status 128 + the signal) or could not write a file
    (1) with one line: why, how many evaluations are saved, and `then`, what to do."""
    saved = f'{results_file.rows_saved()} of {results_file.plan.total} evaluations are saved in {results_file.path}'
    if isinstance(error, KeyboardInterrupt):  # stopping.Stopped, or a KeyboardInterrupt raised by a library
        parser.fail(stopping.exit_status(), f'{saved}; {then}', kind='interrupted')
    parser.fail(1, f'{error}; {saved}: make room (or restore the permission), then {then}')


if __name__ == '__main__':
    stopping.raise_when_stopped()  # Ctrl-C, SIGTERM and SIGHUP from here on: see main
    main()
    stopping.default_when_stopped()
