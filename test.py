"""Bayesian optimisation against quasi-random Sobol search for the learning rate and weight decay of a
LeNet-5-style CNN: a reproduction of "Hyperparameters tuning for Convolutional Neural Network based on
Global Optimization" (J. Bartoli, I. Erpichini).

Edit the constants at the top of this file or override them with flags. Every evaluation is appended
to the output CSV as soon as it ends, and the same command run again resumes a stopped run; after each
search its table (the paper's Table II) is printed, and at the end the mean and standard deviation over
repetitions (the paper's Table I).
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
import tempfile
import warnings

import numpy as np
import torch
from bayes_opt import BayesianOptimization

with warnings.catch_warnings():
    warnings.simplefilter('ignore', SyntaxWarning)  # optunity 1.1.1's docstrings upset Python 3.12 and newer
    import optunity

import dataset_management
import network

# The paper's experiment: the defaults of the flags (python test.py --help)
DATASET = 'cifar10'  # 'cifar10' or 'mnist' as in the paper; 'digits' is the offline quick-start
METHODS = ('bayesian', 'sobol')  # the searches to run, in this order
HYPERPARAMETERS = {'learning_rate': (0.0001, 0.1), 'weight_decay': (0, 0.001)}  # the search box, linear scale
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

METHOD_CHOICES = {'bayesian': ('bayesian',), 'sobol': ('sobol',), 'both': ('bayesian', 'sobol')}
CSV_COLUMNS = ('method', 'repetition', 'iteration', 'seed', 'learning_rate', 'weight_decay',
               'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy', 'seconds')
SCORE_COLUMNS = CSV_COLUMNS[6:]
# What decides the results' numbers, saved beside the CSV and checked on resume (besides the library versions)
CONFIGURATION_SETTINGS = ('dataset', 'validation_size', 'method', 'learning_rate_bounds', 'weight_decay_bounds',
                          'evaluations', 'init_points', 'epochs', 'repetitions', 'batch_size', 'seed')
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
    """'bayesian', 'sobol' or 'both' -> the tuple of methods to run."""
    if text not in METHOD_CHOICES:
        raise argparse.ArgumentTypeError(f'invalid method {text!r} (choose from {", ".join(METHOD_CHOICES)})')
    return METHOD_CHOICES[text]


def build_parser():
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_data_arguments(parser)
    parser.add_argument('--method', type=parse_methods, default=METHODS, metavar='{bayesian,sobol,both}',
                        help='the searches to run')
    parser.add_argument('--evaluations', type=int, default=EVALUATIONS, help='trained networks per search')
    parser.add_argument('--init-points', type=int, default=INIT_POINTS,
                        help='Bayesian search: random evaluations before the Gaussian process proposes')
    parser.add_argument('--epochs', type=int, default=MAX_EPOCHS, help='training epochs per evaluation')
    parser.add_argument('--repetitions', type=int, default=REPETITIONS, help='independent runs of each search')
    parser.add_argument('--learning-rate-bounds', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                        default=HYPERPARAMETERS['learning_rate'], help='the learning-rate range searched')
    parser.add_argument('--weight-decay-bounds', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                        default=HYPERPARAMETERS['weight_decay'], help='the weight-decay range searched')
    parser.add_argument('--seed', type=int, default=SEED, help='seeds every search and network')
    parser.add_argument('--population', type=int, default=POPULATION,
                        help='most networks trained at once as one population (None: 250 on a GPU, 10 on CPU); '
                             "1 trains one at a time inside the optimisers' own loops")
    parser.add_argument('--output', default=OUTPUT,
                        help='the results CSV, one row per evaluation; if it exists, the run resumes it')
    parser.add_argument('--fresh', action='store_true',
                        help='start over: move an existing results file and its configuration aside (never deleted)')
    return parser


def check_arguments(parser, args):
    """End with a one-line error (exit status 2) for any value outside what is allowed."""
    check_data_arguments(parser, args)
    unknown = [method for method in args.method if method not in METHOD_CHOICES['both']]
    if unknown:
        parser.error(f'unknown method {unknown[0]!r}: choose from bayesian, sobol')
    if args.population is None:
        args.population = default_population(args.device)
    for flag in ('evaluations', 'epochs', 'repetitions', 'population'):
        if getattr(args, flag) < 1:
            parser.error(f'--{flag} {getattr(args, flag)} must be a positive integer')
    if not 1 <= args.init_points <= args.evaluations:
        parser.error(f'--init-points {args.init_points} must be between 1 and --evaluations ({args.evaluations})')
    for flag in ('learning_rate_bounds', 'weight_decay_bounds'):
        low, high = getattr(args, flag)
        if not 0 <= low < high < math.inf:
            parser.error(f'--{flag.replace("_", "-")} {low:g} {high:g}: the bounds must satisfy 0 <= LOW < HIGH')
    if args.seed < 0:
        parser.error(f'--seed {args.seed} must be a non-negative integer')


def default_population(device):
    """POPULATION's None: 250 on a GPU (all the Sobol points of the paper's experiment at once), 10 on CPU."""
    return 250 if torch.device(device).type == 'cuda' else 10


def seed_for(*keys):
    """A 32-bit seed derived from (seed, repetition[, iteration]): reproducible and independent of the budgets."""
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


def bayesian_optimizer(bounds, *, seed, objective=None):
    """bayes_opt's optimiser as the authors made it (default UCB acquisition), seeded; proposals may repeat
    (at corners of the box) rather than raise."""
    return BayesianOptimization(f=objective, pbounds=bounds, random_state=seed, verbose=0, allow_duplicate_points=True)


def bayesian_search(objective, bounds, *, evaluations, init_points, seed):
    """bayes_opt: init_points uniform random points, then Gaussian-process (UCB) proposals up to `evaluations`."""
    bayesian_optimizer(bounds, seed=seed, objective=objective).maximize(init_points=init_points,
                                                                        n_iter=evaluations - init_points)


def sobol_search(objective, bounds, *, evaluations, seed):
    """optunity's quasi-random Sobol search (optunity shrinks the box to the middle 99% of each range)."""
    random.seed(seed)  # optunity's only randomness: its skip into the Sobol sequence, drawn from `random`
    optunity.maximize(objective, num_evals=evaluations, solver_name='sobol',
                      **{name: list(bound) for name, bound in bounds.items()})


def sobol_points(bounds, *, evaluations, seed):
    """The (learning rate, weight decay) points sobol_search evaluates, in its order: they do not depend on
    the scores, so they can all be known before any training."""
    points = []

    def record(learning_rate, weight_decay):
        points.append((learning_rate, weight_decay))
        return 0.0
    sobol_search(record, bounds, evaluations=evaluations, seed=seed)
    return points


def search_box(args):
    """The searched ranges, as the optimisers take them."""
    return {'learning_rate': tuple(args.learning_rate_bounds), 'weight_decay': tuple(args.weight_decay_bounds)}


def new_row(method, repetition, iteration, learning_rate, weight_decay, args):
    """A results row before training: which evaluation it is, its network's seed and its point."""
    return dict(method=method, repetition=repetition, iteration=iteration,
                seed=seed_for(args.seed, repetition, iteration),
                learning_rate=float(learning_rate), weight_decay=float(weight_decay))  # bayes_opt gives numpy floats


def optimiser_target(row, search_rows):
    """What the optimiser is told about a trained row: minus its validation loss, or for a diverged network
    minus the larger of DIVERGED_LOSS and the worst finite loss so far in its search (never NaN: bayes_opt
    would store it, then fail at its next fit)."""
    if math.isfinite(row['val_loss']):
        return -row['val_loss']
    return -max([DIVERGED_LOSS, *(r['val_loss'] for r in search_rows if math.isfinite(r['val_loss']))])


class ResumeMismatchError(Exception):
    """A recorded evaluation is not the one the resumed search asks for."""


def configuration(args):
    """The settings that decide the results and the library versions, as saved beside the CSV."""
    settings = {name: list(value) if isinstance(value, tuple) else value
                for name, value in vars(args).items() if name in CONFIGURATION_SETTINGS}
    versions = {'python': platform.python_version(),
                **{package: importlib.metadata.version(package) for package in PACKAGES}}
    return {**settings, 'versions': versions}


def configuration_path(output):
    """The configuration JSON beside a results CSV: results.csv -> results.config.json."""
    return os.path.splitext(output)[0] + '.config.json'


def configuration_differences(saved, current):
    """'name SAVED (now CURRENT)' for every setting or version that differs."""
    flat = [{**{k: v for k, v in config.items() if k != 'versions'},
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
        try:
            row[name] = int(row[name]) if name in ('repetition', 'iteration', 'seed') else float(row[name])
        except ValueError:
            raise ValueError(f'{name} {row[name]!r} is not a number') from None
    if row['method'] not in args.method:
        raise ValueError(f'method {row["method"]!r} is not one of {", ".join(args.method)}')
    ranges = {'repetition': (1, args.repetitions), 'iteration': (1, args.evaluations), **search_box(args),
              'val_loss': (0, math.inf), 'val_accuracy': (0, 1), 'test_loss': (0, math.inf), 'test_accuracy': (0, 1),
              'seconds': (0, math.inf)}
    for name, (low, high) in ranges.items():
        if not low <= row[name] <= high and not (name.endswith('loss') and math.isnan(row[name])):  # NaN: diverged
            raise ValueError(f'{name} {row[name]!r} is outside {low:g}..{high:g}')
    if row['seed'] != seed_for(args.seed, row['repetition'], row['iteration']):
        raise ValueError(f'seed {row["seed"]} is not seed_for({args.seed}, {row["repetition"]}, {row["iteration"]})')
    return row


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
                     and any(method.startswith(cut_line.split(',')[0]) for method in METHOD_CHOICES['both']))
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
        recorded[key] = row
    return recorded, keep


def move_aside(*paths):
    """Rename the existing `paths` to NAME.oldN.EXT, with the first N that is free for all of them."""
    existing = [path for path in paths if os.path.exists(path)]

    def aside(path, number):
        stem, extension = os.path.splitext(path)
        return f'{stem}.old{number}{extension}'
    number = 1
    while any(os.path.exists(aside(path, number)) for path in existing):
        number += 1
    for path in existing:
        os.rename(path, aside(path, number))
        print(f'moved {path} aside to {aside(path, number)}', flush=True)


class Results:
    """The results CSV and the configuration JSON beside it. Rows that an earlier run of the same command
    recorded are answered from the file (recorded_scores); new rows are appended whole and flushed (write)."""

    def __init__(self, args, recorded=None, keep_bytes=0):
        self.args, self.recorded, self.keep_bytes = args, recorded or {}, keep_bytes
        self.saved = len(self.recorded)  # rows in the file
        self.file = None

    def __enter__(self):
        """Move old files aside (--fresh), save the configuration, drop a cut last line and open for appending."""
        output, config_path = self.args.output, configuration_path(self.args.output)
        if self.args.fresh:
            move_aside(output, config_path)
        if not os.path.exists(config_path):
            with open(config_path + '.partial', 'w') as file:
                file.write(json.dumps(configuration(self.args), indent=1) + '\n')
            os.replace(config_path + '.partial', config_path)  # whole or not at all
        self.file = open(output, 'a', newline='')
        self.file.truncate(self.keep_bytes)
        if self.keep_bytes == 0:
            self.file.write(','.join(CSV_COLUMNS) + '\n')
        return self

    def __exit__(self, *exception):
        self.file.close()

    def recorded_scores(self, row):
        """The scores recorded for row's evaluation, or None if it has none; ResumeMismatchError if the file
        recorded another point for it."""
        recorded = self.recorded.get((row['method'], row['repetition'], row['iteration']))
        if recorded is None:
            return None
        if (recorded['learning_rate'], recorded['weight_decay']) != (row['learning_rate'], row['weight_decay']):
            raise ResumeMismatchError(
                f'{self.args.output} records {row["method"]} repetition {row["repetition"]} iteration '
                f'{row["iteration"]} at learning rate {recorded["learning_rate"]!r}, weight decay '
                f'{recorded["weight_decay"]!r}, but the search now asks for {row["learning_rate"]!r}, '
                f'{row["weight_decay"]!r}: the file comes from other code or libraries; --fresh starts over')
        return {name: recorded[name] for name in SCORE_COLUMNS}

    def write(self, rows):
        """Append whole rows and flush them to disk, then print one line per row."""
        text = io.StringIO()
        csv.DictWriter(text, CSV_COLUMNS, lineterminator='\n').writerows(rows)
        self.file.write(text.getvalue())
        self.file.flush()
        os.fsync(self.file.fileno())
        self.saved += len(rows)
        for row in rows:
            print(f'{row["method"]} repetition {row["repetition"]}/{self.args.repetitions} evaluation '
                  f'{row["iteration"]}/{self.args.evaluations}: lr {row["learning_rate"]:.6g} '
                  f'wd {row["weight_decay"]:.6g} -> validation loss {row["val_loss"]:.4f} '
                  f'accuracy {row["val_accuracy"]:.4f} ({row["seconds"]:.1f} s)', flush=True)


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
    if os.path.exists(config_path):
        try:
            with open(config_path) as file:
                differences = configuration_differences(json.load(file), configuration(args))
        except (OSError, ValueError, AttributeError) as error:  # AttributeError: JSON that is not a configuration
            parser.error(f'{config_path} cannot be read as a configuration ({error}): --fresh moves it and {output} '
                         'aside')
        if differences:
            parser.error(f'{output} was made with another configuration ({"; ".join(differences)}): rerun with the '
                         'same settings to resume it, or --fresh moves it aside and starts over')
    elif os.path.exists(output) and os.path.getsize(output) > 0:
        parser.error(f'--output {output} exists without its configuration {config_path}, so it cannot be '
                     'resumed safely: name another file, or --fresh moves it aside')
    if not os.path.exists(output):
        return Results(args)
    try:
        recorded, keep_bytes = read_results(output, args)
    except ValueError as error:
        parser.error(f'{error}; the file is left as it is (fix it, or --fresh moves it aside)')
    return Results(args, recorded, keep_bytes)


def run_search(method, repetition, splits, args, results):
    """One search, one network at a time inside the optimiser's own loop."""
    rows = []

    def objective(learning_rate, weight_decay):
        rows.extend(train_rows([new_row(method, repetition, len(rows) + 1, learning_rate, weight_decay, args)],
                               splits, args, results))
        return optimiser_target(rows[-1], rows)

    search_seed = seed_for(args.seed, repetition)
    if method == 'bayesian':
        bayesian_search(objective, search_box(args), evaluations=args.evaluations, init_points=args.init_points,
                        seed=search_seed)
    else:
        sobol_search(objective, search_box(args), evaluations=args.evaluations, seed=search_seed)
    return rows


def train_networks(rows, splits, args):
    """The scores of the rows' networks: trained alone (--population 1) or as one population."""
    if args.population == 1:
        return [network.train_and_evaluate(splits, seed=row['seed'], learning_rate=row['learning_rate'],
                                           weight_decay=row['weight_decay'], epochs=args.epochs,
                                           batch_size=args.batch_size) for row in rows]
    return network.train_and_evaluate_population(
        splits, seeds=[row['seed'] for row in rows], learning_rates=[row['learning_rate'] for row in rows],
        weight_decays=[row['weight_decay'] for row in rows], epochs=args.epochs, batch_size=args.batch_size)


def train_rows(rows, splits, args, results):
    """Fill in the rows' scores, in populations of at most args.population networks, and write the new ones.
    A population that the results file holds whole is not trained again; one it holds in part (the run was
    stopped while writing it) is retrained whole, as an uninterrupted run trains it, and its recorded rows kept."""
    for start in range(0, len(rows), args.population):
        population = rows[start:start + args.population]
        recorded = [results.recorded_scores(row) for row in population]
        trained = train_networks(population, splits, args) if None in recorded else recorded
        for row, old, new in zip(population, recorded, trained):
            row.update(old or new)
        results.write([row for row, old in zip(population, recorded) if old is None])
    return rows


def sobol_population_searches(splits, args, results):
    """Every repetition's Sobol search: all their points are known before training, so they train as populations."""
    rows = []
    for repetition in range(1, args.repetitions + 1):
        points = sobol_points(search_box(args), evaluations=args.evaluations, seed=seed_for(args.seed, repetition))
        rows += [new_row('sobol', repetition, iteration, *point, args) for iteration, point in enumerate(points, 1)]
    return train_rows(rows, splits, args, results)


def bayesian_population_searches(splits, args, results):
    """Every repetition's Bayesian search in lockstep: at each step every optimiser proposes one point and the
    proposals train as one population. suggest() / register() give the points maximize() gives."""
    repetitions = range(1, args.repetitions + 1)
    optimizers = [bayesian_optimizer(search_box(args), seed=seed_for(args.seed, repetition))
                  for repetition in repetitions]
    queues = [optimizer.random_sample(args.init_points) for optimizer in optimizers]  # maximize() draws these first
    searches = [[] for _ in repetitions]
    for iteration in range(1, args.evaluations + 1):
        points = [queue.pop(0) if queue else optimizer.suggest() for optimizer, queue in zip(optimizers, queues)]
        rows = train_rows([new_row('bayesian', repetition, iteration, point['learning_rate'], point['weight_decay'],
                                   args) for repetition, point in zip(repetitions, points)], splits, args, results)
        for optimizer, point, search_rows, row in zip(optimizers, points, searches, rows):
            search_rows.append(row)
            optimizer.register(point, optimiser_target(row, search_rows))
    return [row for search_rows in searches for row in search_rows]


def run_searches(method, splits, args, results):
    """Every repetition of one method's search: one network at a time (--population 1) or in populations. On
    resume, the searches run again from their seeds and evaluations the results file records are read, not
    trained, so the optimisers see exactly what they saw before."""
    if args.population == 1:
        return [row for repetition in range(1, args.repetitions + 1)
                for row in run_search(method, repetition, splits, args, results)]
    if method == 'bayesian':
        return bayesian_population_searches(splits, args, results)
    return sobol_population_searches(splits, args, results)


def best_row(rows):
    """The evaluation with the lowest finite validation loss (a diverged one only if all diverged)."""
    return min(rows, key=lambda row: row['val_loss'] if math.isfinite(row['val_loss']) else math.inf)


def mean_std(values):
    """Mean and sample standard deviation (n - 1); the deviation is NaN for a single value."""
    values = np.asarray(values, dtype=float)
    return values.mean(), values.std(ddof=1) if len(values) > 1 else math.nan


def print_table(title, columns, rows):
    """Print `rows` (tuples of values) under `columns` ((header, format) pairs): text left, numbers right."""
    lines = [[header for header, _ in columns]]
    lines += [[style.format(value) for (_, style), value in zip(columns, row)] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    aligns = [str.ljust if style == '{}' else str.rjust for _, style in columns]
    lines = ['  '.join(align(cell, width) for cell, width, align in zip(line, widths, aligns)).rstrip()
             for line in lines]
    rule = '-' * max(len(line) for line in lines)
    print('\n'.join(['', title, rule, lines[0], rule, *lines[1:], rule]), flush=True)


def print_search_table(rows, args):
    """The paper's Table II for one search: every evaluation, Bayesian init points and the best one marked."""
    method, repetition = rows[0]['method'], rows[0]['repetition']
    init_points = args.init_points if method == 'bayesian' else 0
    best = best_row(rows)

    def note(row):
        marks = ['init'] * (row['iteration'] <= init_points) + ['best'] * (row is best)
        return ' '.join(marks + ['diverged'] * (not math.isfinite(row['val_loss'])))

    columns = [('Iter', '{:d}'), ('Loss', '{:.4f}'), ('Learning Rate', '{:.6g}'), ('Weight Decay', '{:.6g}'),
               ('Accuracy Validation', '{:.4f}'), ('Accuracy Test', '{:.4f}'), ('', '{}')]
    print_table(f'Table II: {method}, repetition {repetition} (search seed {seed_for(args.seed, repetition)}): '
                f'{len(rows)} evaluations'
                + (f', {init_points} init points' if init_points else '') + f', {args.epochs} epochs per evaluation',
                columns, [(row['iteration'], row['val_loss'], row['learning_rate'], row['weight_decay'],
                           row['val_accuracy'], row['test_accuracy'], note(row)) for row in rows])


def summary_rows(rows, methods):
    """Table I's numbers per method, over repetitions of the search's best evaluation: (method, repetitions,
    mean and std of the validation loss, of the validation accuracy (%) and of the test accuracy (%))."""
    table = []
    for method in methods:
        repetitions = sorted({row['repetition'] for row in rows if row['method'] == method})
        bests = [best_row([row for row in rows if row['method'] == method and row['repetition'] == repetition])
                 for repetition in repetitions]
        table.append((method, len(bests), *mean_std([best['val_loss'] for best in bests]),
                      *mean_std([100 * best['val_accuracy'] for best in bests]),
                      *mean_std([100 * best['test_accuracy'] for best in bests])))
    return table


def print_summary_table(rows, methods):
    """The paper's Table I, plus the test accuracy of the best configurations."""
    columns = [('Method', '{}'), ('Runs', '{:d}'), ('Mean Loss', '{:.4f}'), ('Std Dev', '{:.4f}'),
               ('Mean Accuracy', '{:.4f}%'), ('Std Dev', '{:.4f}%'),
               ('Mean Test Accuracy', '{:.4f}%'), ('Std Dev', '{:.4f}%')]
    print_table('Table I: best validation loss of each search and its accuracy, mean and standard deviation '
                'over repetitions', columns, summary_rows(rows, methods))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    results = open_results(parser, args)
    print('\n'.join(f'{name:<21} {value}' for name, value in vars(args).items()), flush=True)
    total = len(args.method) * args.repetitions * args.evaluations
    if results.recorded:
        print(f'resuming {args.output}: {len(results.recorded)} of {total} evaluations are recorded', flush=True)
    try:
        splits = load_data(parser, args)
        rows = []
        with results:
            for method in args.method:
                method_rows = run_searches(method, splits, args, results)
                for repetition in range(1, args.repetitions + 1):
                    print_search_table([row for row in method_rows if row['repetition'] == repetition], args)
                rows += method_rows
        print_summary_table(rows, args.method)
    except KeyboardInterrupt:
        parser.exit(130, f'{parser.prog}: interrupted: {results.saved} of {total} evaluations are saved in '
                         f'{args.output}; run the same command again to resume\n')
    except ResumeMismatchError as error:
        parser.exit(1, f'{parser.prog}: error: {error}\n')


if __name__ == '__main__':
    main()
