"""Bayesian optimisation against quasi-random Sobol search for the learning rate and weight decay of a
LeNet-5-style CNN: a reproduction of "Hyperparameters tuning for Convolutional Neural Network based on
Global Optimization" (J. Bartoli, I. Erpichini), with uniform random search as an extra baseline.

Edit the constants at the top of this file or override them with flags. Every evaluation is appended
to the output CSV as soon as it ends, and the same command run again resumes a stopped run; after each
method its searches' tables (the paper's Table II) are printed, and at the end the mean and standard
deviation over repetitions (the paper's Table I) with statistics below it. Summaries (JSON, Markdown) and
plots are written beside the CSV; --report rebuilds them from a results file without training.
"""
import argparse
import csv
import importlib.metadata
import io
import json
import math
import os
import platform
import random
import re
import sys
import tempfile
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

import dataset_management
import network
import report

# The paper's experiment: the defaults of the flags (python test.py --help)
DATASET = 'cifar10'  # 'cifar10' or 'mnist' as in the paper; 'digits' is the offline quick-start
# The searches to run, in this order: 'bayesian', 'sobol' (the paper's), 'bayesian-library' (bayes_opt 3.4's own
# Gaussian process), 'random'
METHODS = ('bayesian', 'sobol')
HYPERPARAMETERS = {'learning_rate': (0.0001, 0.1), 'weight_decay': (0, 0.001)}  # the search box
LR_SCALE = 'linear'  # as in the paper; 'log': the searches see log10 of the learning rate
EVALUATIONS = 25  # trained networks per search
INIT_POINTS = 5  # Bayesian search: random points before the Gaussian process proposes
MAX_EPOCHS = 50  # training epochs of every evaluated network
REPETITIONS = 10  # independent repetitions of each search
BATCH_SIZE = 64  # for training, validation and test
VALIDATION_SIZE = None  # the last images of the training set; None: 10,000 (cifar10, mnist), 360 (digits)
SEED = 0  # seeds every search and every network (see seed_for)
# Most networks trained at once, in lockstep (memory grows with it); 1: one at a time. None: 250 on a GPU (all the
# Sobol points of the experiment at once), 10 on CPU (larger populations outgrow the caches and run slower).
POPULATION = None
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
DATA_DIR = 'data'  # where the datasets are, or are downloaded to
OUTPUT = 'results.csv'  # one row per evaluation; rerunning the same command resumes it
# The loss told to the optimisers for a diverged network (NaN or infinite loss): twice chance level,
# or the search's worst finite loss so far if that is higher.
DIVERGED_LOSS = 2 * math.log(10)

METHOD_NAMES = ('bayesian', 'bayesian-library', 'sobol', 'random')
# repeat_of: the earlier iteration whose point a Bayesian proposal repeats (its scores are that row's), else empty
CSV_COLUMNS = ('method', 'repetition', 'iteration', 'repeat_of', 'seed', 'learning_rate', 'weight_decay',
               'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy', 'seconds')
SCORE_COLUMNS = ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy', 'seconds')
# 2: 'bayesian' fits the authors' Gaussian process and the CSV has repeat_of; files of format 1 are not resumed
RESULTS_FORMAT = 2
# What decides the results' numbers, saved beside the CSV and checked on resume (besides the library versions)
CONFIGURATION_SETTINGS = ('dataset', 'validation_size', 'method', 'learning_rate_bounds', 'weight_decay_bounds',
                          'lr_scale', 'evaluations', 'init_points', 'epochs', 'repetitions', 'batch_size', 'seed')
PACKAGES = ('torch', 'torchvision', 'bayesian-optimization', 'optunity', 'numpy', 'scipy', 'scikit-learn')


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        """Exit with status 2 and one line naming the bad value and what is allowed (no usage block)."""
        self.exit(2, f'{self.prog}: error: {message}\n')


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def add_data_arguments(parser):
    """The data flags, shared by test.py and network.py."""
    parser.add_argument('--dataset', choices=dataset_management.DATASETS, default=DATASET, help='the images')
    parser.add_argument('--data-dir', default=DATA_DIR, help='where the dataset is, or is downloaded to')
    parser.add_argument('--validation-size', type=int, default=VALIDATION_SIZE,
                        help='images at the end of the training set kept for validation (None: 10000 for '
                             'cifar10 and mnist, 360 for digits)')
    parser.add_argument('--batch-size', type=int, default=BATCH_SIZE, help='for training, validation and test')
    parser.add_argument('--device', default=DEVICE, help='cpu, cuda or cuda:N')


def check_data_arguments(parser, args):
    """End with a one-line error for a bad data flag; fill in the dataset's default validation size."""
    if args.dataset not in dataset_management.DATASETS:
        parser.error(f'unknown dataset {args.dataset!r}: choose from {", ".join(dataset_management.DATASETS)}')
    if args.validation_size is None:
        args.validation_size = dataset_management.DEFAULT_VALIDATION_SIZES[args.dataset]
    try:
        dataset_management.check_validation_size(args.dataset, args.validation_size,
                                                 dataset_management.TRAINING_SET_SIZES[args.dataset])
    except ValueError as error:
        parser.error(str(error))
    if args.batch_size < 1:
        parser.error(f'--batch-size {args.batch_size} must be a positive integer')
    check_device(parser, args.device)
    if args.dataset != 'digits' and os.path.exists(args.data_dir):  # digits come with scikit-learn
        try:
            os.listdir(args.data_dir)
        except OSError as error:
            parser.error(f'--data-dir {args.data_dir} cannot be read ({error.strerror})')


def check_device(parser, name):
    """End with a one-line error unless `name` is cpu or an existing CUDA device."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda'):
        parser.error(f'--device {name!r} is not allowed: use cpu, cuda or cuda:N')
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        parser.error(f'--device {name}: there is no such CUDA device here ({torch.cuda.device_count()} CUDA devices)')


def load_data(parser, args):
    """The splits, loaded once onto args.device; a missing dataset ends the run with one line."""
    try:
        return dataset_management.load_splits(args.dataset, args.data_dir, args.validation_size, args.device)
    except ValueError as error:  # a validation size too large for the dataset found in the data folder
        parser.error(str(error))
    except dataset_management.DatasetNotFoundError as error:
        parser.exit(1, f'{parser.prog}: error: {error}\n')


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


def build_parser():
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_data_arguments(parser)
    parser.add_argument('--method', type=parse_methods, default=METHODS, metavar='METHOD[,METHOD...]',
                        help="the searches to run, in order: bayesian (the authors' Gaussian process), "
                             "bayesian-library (bayes_opt 3.4's own), sobol, random (uniform), comma-separated; "
                             'both: bayesian,sobol')
    parser.add_argument('--evaluations', type=int, default=EVALUATIONS, help='trained networks per search')
    parser.add_argument('--init-points', type=int, default=INIT_POINTS,
                        help='Bayesian search: random evaluations before the Gaussian process proposes')
    parser.add_argument('--epochs', type=int, default=MAX_EPOCHS, help='training epochs per evaluation')
    parser.add_argument('--repetitions', type=int, default=REPETITIONS, help='independent runs of each search')
    parser.add_argument('--learning-rate-bounds', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                        default=HYPERPARAMETERS['learning_rate'], help='the learning-rate range searched')
    parser.add_argument('--weight-decay-bounds', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                        default=HYPERPARAMETERS['weight_decay'], help='the weight-decay range searched')
    parser.add_argument('--lr-scale', choices=('linear', 'log'), default=LR_SCALE,
                        help='the scale the searches see the learning rate on')
    parser.add_argument('--seed', type=int, default=SEED, help='seeds every search and network')
    parser.add_argument('--population', type=int, default=POPULATION,
                        help='most networks trained at once as one population (None: 250 on a GPU, 10 on CPU); '
                             "1 trains one network at a time (Sobol: inside optunity's own loop)")
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
    check_data_arguments(parser, args)
    unknown = [method for method in args.method if method not in METHOD_NAMES]
    if unknown:
        parser.error(f'unknown method {unknown[0]!r}: choose from {", ".join(METHOD_NAMES)}')
    if args.population is None:
        args.population = default_population(args.device)
    for flag in ('evaluations', 'epochs', 'repetitions', 'population'):
        if getattr(args, flag) < 1:
            parser.error(f'--{flag} {getattr(args, flag)} must be a positive integer')
    if set(args.method) & set(report.BAYESIAN_METHODS) and not 1 <= args.init_points <= args.evaluations:
        parser.error(f'--init-points {args.init_points} must be between 1 and --evaluations ({args.evaluations})')
    for flag in ('learning_rate_bounds', 'weight_decay_bounds'):
        low, high = getattr(args, flag)
        if not 0 <= low < high < math.inf:
            parser.error(f'--{flag.replace("_", "-")} {low:g} {high:g}: the bounds must satisfy 0 <= LOW < HIGH')
    if args.lr_scale == 'log' and args.learning_rate_bounds[0] == 0:
        parser.error('--lr-scale log needs a positive --learning-rate-bounds LOW (it is 0)')
    if args.seed < 0:
        parser.error(f'--seed {args.seed} must be a non-negative integer')


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
    """bayes_opt's optimiser as the authors made it (default UCB acquisition, kappa 2.576), seeded, with the
    Gaussian process bayes_opt 1.0.1 fitted on scikit-learn 0.21: Matern 2.5, alpha 1e-6, centred targets, 25
    restarts of the kernel fit drawn from the optimiser's random state. library=True keeps bayes_opt 3.4's own
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

    def record(**point):
        points.append(point)
        return 0.0
    sobol_search(record, bounds, evaluations=evaluations, seed=seed)
    return points


def random_points(bounds, *, evaluations, seed):
    """Uniform random search's points (the paper's Fig. 2): each coordinate uniform over its range, drawn in
    order from numpy's generator seeded with `seed`."""
    generator = np.random.default_rng(seed)
    return [{name: float(generator.uniform(low, high)) for name, (low, high) in bounds.items()}
            for _ in range(evaluations)]


PLANNED_POINTS = {'sobol': sobol_points, 'random': random_points}  # the searches whose points ignore the scores


def search_box(args):
    """The box the optimisers search: the learning rate's range, or with --lr-scale log its log10's, and the
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


def optimiser_target(row, search_rows):
    """What the optimiser is told about a trained row: minus its validation loss, or for a diverged network
    minus the larger of DIVERGED_LOSS and the worst finite loss so far in its search (never NaN: bayes_opt
    would store it, then fail at its next fit)."""
    if math.isfinite(row['val_loss']):
        return -row['val_loss']
    return -max([DIVERGED_LOSS, *report.finite_losses(search_rows)])


class ResumeMismatchError(Exception):
    """A recorded evaluation is not the one the resumed search asks for."""


def configuration(args):
    """The settings that decide the results and the library versions, as saved beside the CSV (where the devices
    that trained its rows are added: see Results)."""
    settings = {name: list(value) if isinstance(value, tuple) else value
                for name, value in vars(args).items() if name in CONFIGURATION_SETTINGS}
    versions = {'python': platform.python_version(),
                **{package: importlib.metadata.version(package) for package in PACKAGES}}
    return {'results_format': RESULTS_FORMAT, **settings, 'versions': versions}


def check_results_format(parser, path, saved):
    """End with a one-line error if the configuration `saved` says its results file `path` has another format."""
    found = saved.get('results_format', 1)
    if found != RESULTS_FORMAT:
        parser.error(f'{path} is in results format {found}, this code reads format {RESULTS_FORMAT} (in which '
                     "bayesian rows come from the authors' Gaussian process and repeated points have a repeat_of "
                     'column): it can be neither resumed nor reported (--fresh moves it aside)')


def configuration_path(output):
    """The configuration JSON beside a results CSV: results.csv -> results.config.json."""
    return report.path_beside(output, '.config.json')


def configuration_differences(saved, current):
    """'name SAVED (now CURRENT)' for every setting or version that differs (the devices may)."""
    flat = [{**report.settings_of(config),
             **{f'{package} version': version for package, version in config.get('versions', {}).items()}}
            for config in (saved, current)]
    return [f'{name} {flat[0].get(name)!r} (now {flat[1].get(name)!r})'
            for name in sorted(flat[0].keys() | flat[1].keys()) if flat[0].get(name) != flat[1].get(name)]


def parse_row(fields, args):
    """A results row from its CSV fields, typed; ValueError (one line) unless this configuration could write it."""
    if len(fields) != len(CSV_COLUMNS):
        raise ValueError(f'{len(fields)} fields instead of {len(CSV_COLUMNS)}')
    row = dict(zip(CSV_COLUMNS, fields))
    for name in CSV_COLUMNS[1:]:
        if name == 'repeat_of' and row[name] == '':  # not a repeat
            row[name] = None
            continue
        try:
            row[name] = int(row[name]) if name in ('repetition', 'iteration', 'repeat_of', 'seed') else float(row[name])
        except ValueError:
            raise ValueError(f'{name} {row[name]!r} is not a number') from None
    if row['method'] not in args.method:
        raise ValueError(f'method {row["method"]!r} is not one of {", ".join(args.method)}')
    ranges = {'repetition': (1, args.repetitions), 'iteration': (1, args.evaluations),
              'learning_rate': args.learning_rate_bounds, 'weight_decay': args.weight_decay_bounds,
              'val_loss': (0, math.inf), 'val_accuracy': (0, 1), 'test_loss': (0, math.inf), 'test_accuracy': (0, 1),
              'seconds': (0, math.inf)}
    for name, (low, high) in ranges.items():
        if not low <= row[name] <= high and not (name.endswith('loss') and math.isnan(row[name])):  # NaN: diverged
            raise ValueError(f'{name} {row[name]!r} is outside {low:g}..{high:g}')
    if row['repeat_of'] is not None and not (row['method'] in report.BAYESIAN_METHODS
                                             and 1 <= row['repeat_of'] < row['iteration']):
        raise ValueError(f'repeat_of {row["repeat_of"]} is not an earlier iteration of a Bayesian search')
    trained = row['repeat_of'] or row['iteration']  # the iteration whose network gave the scores
    if row['seed'] != seed_for(args.seed, row['repetition'], trained):
        raise ValueError(f'seed {row["seed"]} is not seed_for({args.seed}, {row["repetition"]}, {trained})')
    return row


def same_evaluation(repeat, original):
    """Whether a repeat row holds the point and scores (all but the time) of its original row."""
    names = ('learning_rate', 'weight_decay', 'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')
    return original is not None and all(str(repeat[name]) == str(original[name]) for name in names)  # NaN: 'nan'


def read_results(path, args):
    """The rows a results file records, by (method, repetition, iteration), and how many of its bytes to keep:
    a last line cut while it was being written (it has no newline yet) is dropped. ValueError (one line) for any
    other content this configuration could not have written."""
    with open(path, 'rb') as file:
        data = file.read()
    keep = data.rfind(b'\n') + 1
    cut_line = data[keep:].decode('utf-8', errors='replace')
    if keep == 0:
        cut_short = ','.join(CSV_COLUMNS).startswith(cut_line)
    else:  # only what write() writes: a method's name, then numbers
        cut_short = (re.fullmatch(r'[a-z0-9.,+-]*', cut_line) and cut_line.count(',') < len(CSV_COLUMNS)
                     and any(method.startswith(cut_line.split(',')[0]) for method in METHOD_NAMES))
    if not cut_short:
        raise ValueError(f'{path}: its last line, {cut_line[:40]!r}, is neither whole nor a row cut short')
    try:
        lines = data[:keep].decode('utf-8').split('\n')[:-1]
    except UnicodeDecodeError as error:
        raise ValueError(f'{path}: not a text file ({error.reason} at byte {error.start})') from None
    if lines and lines[0] != ','.join(CSV_COLUMNS):
        raise ValueError(f'{path} line 1: the header is not {",".join(CSV_COLUMNS)}')
    recorded = {}
    for number, fields in enumerate(csv.reader(lines[1:]), 2):
        try:
            row = parse_row(fields, args)
        except ValueError as error:
            raise ValueError(f'{path} line {number}: {error}') from None
        key = row['method'], row['repetition'], row['iteration']
        if key in recorded:
            raise ValueError(f'{path} line {number}: {key[0]} repetition {key[1]} iteration {key[2]} is recorded twice')
        if row['repeat_of'] is not None and not same_evaluation(row, recorded.get(key[:2] + (row['repeat_of'],))):
            raise ValueError(f'{path} line {number}: a repeat of iteration {row["repeat_of"]}, which the file does '
                             'not record at the same point with the same scores')
        recorded[key] = row
    return recorded, keep


def move_aside(output):
    """Rename the files of the run in `output` (the CSV, its configuration, summaries and plots) from results.* to
    results.oldN.*, with the first N that is free for all of them: --report results.oldN.csv still finds them."""
    paths = [output, configuration_path(output), *report.report_paths(output).values()]
    existing = [path for path in paths if os.path.exists(path)]
    stem = os.path.splitext(output)[0]

    def aside(path, number):
        return f'{stem}.old{number}{path[len(stem):]}'
    number = 1
    while any(os.path.exists(aside(path, number)) for path in existing):
        number += 1
    for path in existing:
        os.rename(path, aside(path, number))
        print(f'moved {path} aside to {aside(path, number)}', flush=True)


class Results:
    """The results CSV and the configuration JSON beside it. Rows that an earlier run of the same command
    recorded are answered from the file (recorded_scores); new rows are appended whole and flushed, and shown as
    progress (write)."""

    def __init__(self, args, saved_configuration=None, recorded=None, keep_bytes=0):
        self.args, self.recorded, self.keep_bytes = args, recorded or {}, keep_bytes
        self.configuration = saved_configuration or configuration(args)
        self.configuration.setdefault('devices', [])  # every device that has run this configuration
        self.saved = len(self.recorded)  # rows in the file
        self.total = len(args.method) * args.repetitions * args.evaluations
        self.best = {method: math.inf for method in args.method}  # the lowest finite validation loss so far
        self.note_best(self.recorded.values())
        self.show_bar = not args.quiet and sys.stderr.isatty()  # else one printed line per evaluation, if not quiet
        self.file = self.bar = None

    def __enter__(self):
        """Move old files aside (--fresh), save the configuration, drop a cut last line and open for appending."""
        output, config_path = self.args.output, configuration_path(self.args.output)
        if self.args.fresh:
            move_aside(output)
        device = network.device_name(self.args.device)
        if device not in self.configuration['devices']:
            self.configuration['devices'].append(device)
            with open(config_path + '.partial', 'w') as file:
                file.write(json.dumps(self.configuration, indent=1) + '\n')
            os.replace(config_path + '.partial', config_path)  # whole or not at all
        self.file = open(output, 'a', newline='')
        self.file.truncate(self.keep_bytes)
        if self.keep_bytes == 0:
            self.file.write(','.join(CSV_COLUMNS) + '\n')
        self.bar = tqdm(total=self.total, initial=self.saved, unit='eval', dynamic_ncols=True,
                        disable=not self.show_bar)
        return self

    def __exit__(self, *exception):
        self.bar.close()
        self.file.close()

    def recorded_scores(self, row):
        """The scores recorded for row's evaluation, or None if it has none; ResumeMismatchError if the file
        recorded another point for it."""
        recorded = self.recorded.get((row['method'], row['repetition'], row['iteration']))
        if recorded is None:
            return None

        def point(evaluation):
            return (f'learning rate {evaluation["learning_rate"]!r}, weight decay {evaluation["weight_decay"]!r}'
                    + (f' (a repeat of iteration {evaluation["repeat_of"]})' if evaluation['repeat_of'] else ''))
        if any(recorded[name] != row[name] for name in ('learning_rate', 'weight_decay', 'repeat_of')):
            raise ResumeMismatchError(
                f'{self.args.output} records {row["method"]} repetition {row["repetition"]} iteration '
                f'{row["iteration"]} at {point(recorded)}, but the search now asks for {point(row)}: the file comes '
                'from other code or libraries; --fresh starts over')
        return {name: recorded[name] for name in SCORE_COLUMNS}

    def note_best(self, rows):
        """Keep each method's lowest finite validation loss among `rows` and those seen before."""
        for row in rows:
            if math.isfinite(row['val_loss']):
                self.best[row['method']] = min(self.best[row['method']], row['val_loss'])

    def write(self, rows):
        """Append whole rows and flush them to disk, then show them: on a terminal the progress bar's count, the
        rows' method and repetitions and the method's best validation loss so far, else one line per row."""
        if not rows:
            return
        text = io.StringIO()
        csv.DictWriter(text, CSV_COLUMNS, lineterminator='\n').writerows(rows)
        self.file.write(text.getvalue())
        self.file.flush()
        os.fsync(self.file.fileno())
        self.saved += len(rows)
        self.note_best(rows)
        method, repetitions = rows[-1]['method'], sorted({row['repetition'] for row in rows})
        shown = f' {repetitions[0]}' if len(repetitions) == 1 else f's {repetitions[0]}-{repetitions[-1]}'
        self.bar.set_description(f'{method} repetition{shown}/{self.args.repetitions}', refresh=False)
        self.bar.set_postfix_str(f'best validation loss {self.best[method]:.4f}', refresh=False)
        self.bar.update(len(rows))
        if self.show_bar or self.args.quiet:
            return
        for row in rows:
            how = f'repeat of {row["repeat_of"]}' if row['repeat_of'] else f'{row["seconds"]:.1f} s'
            print(f'{row["method"]} repetition {row["repetition"]}/{self.args.repetitions} evaluation '
                  f'{row["iteration"]}/{self.args.evaluations}: lr {row["learning_rate"]:.6g} '
                  f'wd {row["weight_decay"]:.6g} -> validation loss {row["val_loss"]:.4f} '
                  f'accuracy {row["val_accuracy"]:.4f} ({how})', flush=True)


def open_results(parser, args):
    """The run's Results, checked before anything is trained or written: the output folder must be writable, and
    an existing results file must come from this configuration (or --fresh moves it aside). One-line errors."""
    output, config_path = args.output, configuration_path(args.output)
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        parser.error(f'--output {output}: its folder {folder} does not exist')
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        parser.error(f'--output {output}: cannot write in its folder {folder} ({error.strerror})')
    if os.path.isdir(output) or (os.path.exists(output) and not os.access(output, os.W_OK)):
        parser.error(f'--output {output} is a folder or cannot be written')
    if args.fresh:
        return Results(args)
    saved = None
    if os.path.exists(config_path):
        try:
            with open(config_path) as file:
                saved = json.load(file)
            differences = configuration_differences(saved, configuration(args))
        except (OSError, ValueError, AttributeError) as error:  # AttributeError: JSON that is not a configuration
            parser.error(f'{config_path} cannot be read as a configuration ({error}): --fresh moves it and {output} '
                         'aside')
        check_results_format(parser, output, saved)
        if differences:
            parser.error(f'{output} was made with another configuration ({"; ".join(differences)}): rerun with the '
                         'same settings to resume it, or --fresh moves it aside and starts over')
    elif os.path.exists(output) and os.path.getsize(output) > 0:
        parser.error(f'--output {output} exists without its configuration {config_path}, so it cannot be '
                     'resumed safely: name another file, or --fresh moves it aside')
    if not os.path.exists(output):
        return Results(args, saved)
    try:
        recorded, keep_bytes = read_results(output, args)
    except ValueError as error:
        parser.error(f'{error}; the file is left as it is (fix it, or --fresh moves it aside)')
    return Results(args, saved, recorded, keep_bytes)


def run_search(method, repetition, splits, args, results):
    """One Sobol or random search, one network at a time inside the optimiser's own loop (random search: in its
    points' order)."""
    rows = []

    def objective(**point):
        rows.extend(train_rows([new_row(method, repetition, len(rows) + 1, point, args)], splits, args, results))
        return optimiser_target(rows[-1], rows)

    box, search_seed = search_box(args), seed_for(args.seed, repetition)
    if method == 'sobol':
        sobol_search(objective, box, evaluations=args.evaluations, seed=search_seed)
    else:
        for point in random_points(box, evaluations=args.evaluations, seed=search_seed):
            objective(**point)
    return rows


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


def train_rows(rows, splits, args, results):
    """Fill in the rows' scores, in populations of at most args.population networks, and write the new ones.
    A row that comes with scores (a repeated Bayesian point) is written, not trained. A population that the
    results file holds whole is not trained again; one it holds in part (the run was stopped while writing it) is
    retrained whole, as an uninterrupted run trains it, and its recorded rows kept."""
    for start in range(0, len(rows), args.population):
        population = rows[start:start + args.population]
        recorded = [results.recorded_scores(row) for row in population]
        untrained = [row for row in population if row['repeat_of'] is None]  # a repeat comes with its scores
        if any(old is None for row, old in zip(population, recorded) if row['repeat_of'] is None):
            for row, scores in zip(untrained, train_networks(untrained, splits, args, progress=results.show_bar)):
                row.update(scores)
        for row, old in zip(population, recorded):
            row.update(old or {})
        results.write([row for row, old in zip(population, recorded) if old is None])
    return rows


def planned_population_searches(method, splits, args, results):
    """Every repetition's Sobol or random search: their points do not depend on the scores, so all are known
    before training and they train as populations."""
    rows = []
    for repetition in range(1, args.repetitions + 1):
        points = PLANNED_POINTS[method](search_box(args), evaluations=args.evaluations,
                                        seed=seed_for(args.seed, repetition))
        rows += [new_row(method, repetition, iteration, point, args) for iteration, point in enumerate(points, 1)]
    return train_rows(rows, splits, args, results)


def answered_from_cache(row, search_rows):
    """The row as bayes_opt 1.0.1's maximize() answered a point it had already evaluated, from its cache: the
    scores (and network seed) of the search's earlier row at that point, `repeat_of` its iteration, no training
    time. The row unchanged if the point is new."""
    for earlier in search_rows:
        if (earlier['learning_rate'], earlier['weight_decay']) == (row['learning_rate'], row['weight_decay']):
            return {**row, 'repeat_of': earlier['iteration'], 'seed': earlier['seed'],
                    **{name: earlier[name] for name in SCORE_COLUMNS}, 'seconds': 0.0}
    return row


def bayesian_searches(method, repetitions, splits, args, results):
    """The repetitions' Bayesian searches in lockstep, each as bayes_opt 1.0.1's maximize() ran it: init_points
    uniform random points, then one Gaussian-process (UCB) proposal per evaluation. At each step the searches'
    new points train as one population; a repeated point is answered from its earlier row and not told to the
    Gaussian process again (bayes_opt would raise), but uses up its evaluation."""
    optimizers = [bayesian_optimizer(search_box(args), seed=seed_for(args.seed, repetition),
                                     library=method == 'bayesian-library') for repetition in repetitions]
    queues = [optimizer.random_sample(args.init_points) for optimizer in optimizers]  # drawn first, as maximize()
    searches = [[] for _ in repetitions]
    for iteration in range(1, args.evaluations + 1):
        points = [queue.pop(0) if queue else optimizer.suggest() for optimizer, queue in zip(optimizers, queues)]
        rows = train_rows([answered_from_cache(new_row(method, repetition, iteration, point, args), search_rows)
                           for repetition, point, search_rows in zip(repetitions, points, searches)],
                          splits, args, results)
        for optimizer, point, search_rows, row in zip(optimizers, points, searches, rows):
            search_rows.append(row)
            if row['repeat_of'] is None:
                optimizer.register(point, optimiser_target(row, search_rows))
    return [row for search_rows in searches for row in search_rows]


def run_searches(method, splits, args, results):
    """Every repetition of one method's search: one network at a time (--population 1) or in populations. On
    resume, the searches run again from their seeds and evaluations the results file records are read, not
    trained, so the optimisers see exactly what they saw before."""
    repetitions = range(1, args.repetitions + 1)
    if method in report.BAYESIAN_METHODS:
        if args.population == 1:
            return [row for repetition in repetitions
                    for row in bayesian_searches(method, [repetition], splits, args, results)]
        return bayesian_searches(method, repetitions, splits, args, results)
    if args.population == 1:
        return [row for repetition in repetitions for row in run_search(method, repetition, splits, args, results)]
    return planned_population_searches(method, splits, args, results)


def search_tables(rows, args):
    """The paper's Table II of every search in `rows`."""
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
    rows = sorted(rows, key=lambda row: (args.method.index(row['method']), row['repetition'], row['iteration']))
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


def report_file(parser, args):
    """--report FILE: print the tables of a results file and write its summaries and plots, with the settings
    its configuration file saved; nothing is trained."""
    path, config_path = args.report, configuration_path(args.report)
    try:
        with open(config_path) as file:
            saved = json.load(file)
        settings = {name: tuple(value) if isinstance(value, list) else value
                    for name, value in saved.items() if name in CONFIGURATION_SETTINGS}
    except (OSError, ValueError, AttributeError) as error:  # AttributeError: JSON that is not a configuration
        parser.error(f'--report {path}: its configuration {config_path} cannot be read ({error})')
    check_results_format(parser, path, saved)
    args = argparse.Namespace(**{**vars(args), **settings, 'output': path})
    try:
        rows = list(read_results(path, args)[0].values())
    except OSError as error:
        parser.error(f'--report {path} cannot be read ({error.strerror})')
    except ValueError as error:
        parser.error(f'--report: {error}')
    if not rows:
        parser.error(f'--report {path}: the file records no evaluation yet')
    print_search_tables(rows, args)
    report_results(rows, args, saved, path)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.report:
        return report_file(parser, args)
    check_arguments(parser, args)
    results = open_results(parser, args)
    print('\n'.join(f'{name:<21} {value}' for name, value in vars(args).items()), flush=True)
    if results.recorded:
        print(f'resuming {args.output}: {len(results.recorded)} of {results.total} evaluations are recorded',
              flush=True)
    try:
        splits = load_data(parser, args)
        rows = []
        with results:
            for method in args.method:
                method_rows = run_searches(method, splits, args, results)
                print_search_tables(method_rows, args)
                rows += method_rows
        report_results(rows, args, results.configuration, args.output)
    except KeyboardInterrupt:
        parser.exit(130, f'{parser.prog}: interrupted: {results.saved} of {results.total} evaluations are saved in '
                         f'{args.output}; run the same command again to resume\n')
    except ResumeMismatchError as error:
        parser.exit(1, f'{parser.prog}: error: {error}\n')


if __name__ == '__main__':
    main()
