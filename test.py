"""Bayesian optimisation against quasi-random Sobol search for the learning rate and weight decay of a
LeNet-5-style CNN: a reproduction of "Hyperparameters tuning for Convolutional Neural Network based on
Global Optimization" (J. Bartoli, I. Erpichini).

Edit the constants at the top of this file or override them with flags. Every evaluation is appended
to the output CSV as soon as it ends; after each search its table (the paper's Table II) is printed,
and at the end the mean and standard deviation over repetitions (the paper's Table I).
"""
import argparse
import csv
import math
import os
import random
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
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
DATA_DIR = 'data'  # where the datasets are, or are downloaded to
OUTPUT = 'results.csv'  # one row per evaluation
# The loss told to the optimisers for a diverged network (NaN or infinite loss): twice chance level,
# or the search's worst finite loss so far if that is higher.
DIVERGED_LOSS = 2 * math.log(10)

METHOD_CHOICES = {'bayesian': ('bayesian',), 'sobol': ('sobol',), 'both': ('bayesian', 'sobol')}
CSV_COLUMNS = ('method', 'repetition', 'iteration', 'seed', 'learning_rate', 'weight_decay',
               'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy', 'seconds')


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
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda'):
        parser.error(f'--device {args.device!r} is not allowed: use cpu, cuda or cuda:N')
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        parser.error(f'--device {args.device}: there is no such CUDA device here '
                     f'({torch.cuda.device_count()} CUDA devices)')


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
    parser.add_argument('--output', default=OUTPUT, help='the results CSV, one row per evaluation')
    return parser


def check_arguments(parser, args):
    """End with a one-line error (exit status 2) for any value outside what is allowed."""
    check_data_arguments(parser, args)
    unknown = [method for method in args.method if method not in METHOD_CHOICES['both']]
    if unknown:
        parser.error(f'unknown method {unknown[0]!r}: choose from bayesian, sobol')
    for flag in ('evaluations', 'epochs', 'repetitions'):
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
    if os.path.exists(args.output) and os.path.getsize(args.output) > 0:
        parser.error(f'--output {args.output} already exists: name another file or move it away')
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        parser.error(f'--output {args.output}: its folder does not exist')


def seed_for(*keys):
    """A 32-bit seed derived from (seed, repetition[, iteration]): reproducible and independent of the budgets."""
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


def bayesian_search(objective, bounds, *, evaluations, init_points, seed):
    """bayes_opt: init_points uniform random points, then Gaussian-process (UCB) proposals up to `evaluations`."""
    optimizer = BayesianOptimization(f=objective, pbounds=bounds, random_state=seed, verbose=0,
                                     allow_duplicate_points=True)  # proposals can repeat, at corners of the box
    optimizer.maximize(init_points=init_points, n_iter=evaluations - init_points)


def sobol_search(objective, bounds, *, evaluations, seed):
    """optunity's quasi-random Sobol search (optunity shrinks the box to the middle 99% of each range)."""
    random.seed(seed)  # optunity's only randomness: its skip into the Sobol sequence, drawn from `random`
    optunity.maximize(objective, num_evals=evaluations, solver_name='sobol',
                      **{name: list(bound) for name, bound in bounds.items()})


def run_search(method, repetition, splits, args, write_row):
    """One search: each evaluation trains a fresh network, is written with write_row, and is returned in order."""
    rows = []

    def objective(learning_rate, weight_decay):
        learning_rate, weight_decay = float(learning_rate), float(weight_decay)  # bayes_opt gives numpy floats
        iteration = len(rows) + 1
        seed = seed_for(args.seed, repetition, iteration)
        scores = network.train_and_evaluate(splits, seed=seed, learning_rate=learning_rate, weight_decay=weight_decay,
                                            epochs=args.epochs, batch_size=args.batch_size)
        rows.append(dict(method=method, repetition=repetition, iteration=iteration, seed=seed,
                         learning_rate=learning_rate, weight_decay=weight_decay, **scores))
        write_row(rows[-1])
        print(f'{method} repetition {repetition}/{args.repetitions} evaluation {iteration}/{args.evaluations}: '
              f'lr {learning_rate:.6g} wd {weight_decay:.6g} -> validation loss {scores["val_loss"]:.4f} '
              f'accuracy {scores["val_accuracy"]:.4f} ({scores["seconds"]:.1f} s)', flush=True)
        if math.isfinite(scores['val_loss']):
            return -scores['val_loss']
        finite_losses = [row['val_loss'] for row in rows if math.isfinite(row['val_loss'])]
        return -max([DIVERGED_LOSS, *finite_losses])  # never NaN: bayes_opt would store it, then fail at its next fit

    bounds = {'learning_rate': tuple(args.learning_rate_bounds), 'weight_decay': tuple(args.weight_decay_bounds)}
    search_seed = seed_for(args.seed, repetition)
    if method == 'bayesian':
        bayesian_search(objective, bounds, evaluations=args.evaluations, init_points=args.init_points,
                        seed=search_seed)
    else:
        sobol_search(objective, bounds, evaluations=args.evaluations, seed=search_seed)
    return rows


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
    print('\n'.join(f'{name:<21} {value}' for name, value in vars(args).items()), flush=True)
    splits = load_data(parser, args)
    rows = []
    with open(args.output, 'w', newline='') as file:
        writer = csv.DictWriter(file, CSV_COLUMNS)
        writer.writeheader()

        def write_row(row):
            writer.writerow(row)
            file.flush()  # an interrupted run keeps every finished evaluation

        for method in args.method:
            for repetition in range(1, args.repetitions + 1):
                search_rows = run_search(method, repetition, splits, args, write_row)
                print_search_table(search_rows, args)
                rows += search_rows
    print_summary_table(rows, args.method)


if __name__ == '__main__':
    main()
