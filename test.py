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
# Most networks trained at once, in lockstep (memory grows with it); 1: one at a time. None: 250 on a GPU (all the
# Sobol points of the experiment at once), 10 on CPU (larger populations outgrow the caches and run slower).
POPULATION = None
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
    check_device(parser, args.device)


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
    parser.add_argument('--output', default=OUTPUT, help='the results CSV, one row per evaluation')
    return parser


def check_arguments(parser, args):
    """End with a one-line error (exit status 2) for any value outside what is allowed."""
    check_data_arguments(parser, args)
    unknown = [method for method in args.method if method not in METHOD_CHOICES['both']]
    if unknown:
        parser.error(f'unknown method {unknown[0]!r}: choose from bayesian, sobol')
    if args.population is None:
        args.population = 250 if torch.device(args.device).type == 'cuda' else 10
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
    if os.path.exists(args.output) and os.path.getsize(args.output) > 0:
        parser.error(f'--output {args.output} already exists: name another file or move it away')
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        parser.error(f'--output {args.output}: its folder does not exist')


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


def run_search(method, repetition, splits, args, report):
    """One search, one network at a time inside the optimiser's own loop; each finished row is reported."""
    rows = []

    def objective(learning_rate, weight_decay):
        row = new_row(method, repetition, len(rows) + 1, learning_rate, weight_decay, args)
        row.update(network.train_and_evaluate(splits, seed=row['seed'], learning_rate=row['learning_rate'],
                                              weight_decay=row['weight_decay'], epochs=args.epochs,
                                              batch_size=args.batch_size))
        rows.append(row)
        report(row)
        return optimiser_target(row, rows)

    search_seed = seed_for(args.seed, repetition)
    if method == 'bayesian':
        bayesian_search(objective, search_box(args), evaluations=args.evaluations, init_points=args.init_points,
                        seed=search_seed)
    else:
        sobol_search(objective, search_box(args), evaluations=args.evaluations, seed=search_seed)
    return rows


def train_rows(rows, splits, args, report):
    """Train new rows in populations of at most args.population networks; fill in and report their scores."""
    for start in range(0, len(rows), args.population):
        population = rows[start:start + args.population]
        scores = network.train_and_evaluate_population(
            splits, seeds=[row['seed'] for row in population],
            learning_rates=[row['learning_rate'] for row in population],
            weight_decays=[row['weight_decay'] for row in population], epochs=args.epochs, batch_size=args.batch_size)
        for row, row_scores in zip(population, scores):
            row.update(row_scores)
            report(row)
    return rows


def sobol_population_searches(splits, args, report):
    """Every repetition's Sobol search: all their points are known before training, so they train as populations."""
    rows = []
    for repetition in range(1, args.repetitions + 1):
        points = sobol_points(search_box(args), evaluations=args.evaluations, seed=seed_for(args.seed, repetition))
        rows += [new_row('sobol', repetition, iteration, *point, args) for iteration, point in enumerate(points, 1)]
    return train_rows(rows, splits, args, report)


def bayesian_population_searches(splits, args, report):
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
                                   args) for repetition, point in zip(repetitions, points)], splits, args, report)
        for optimizer, point, search_rows, row in zip(optimizers, points, searches, rows):
            search_rows.append(row)
            optimizer.register(point, optimiser_target(row, search_rows))
    return [row for search_rows in searches for row in search_rows]


def run_searches(method, splits, args, report):
    """Every repetition of one method's search: one network at a time (--population 1) or in populations."""
    if args.population == 1:
        return [row for repetition in range(1, args.repetitions + 1)
                for row in run_search(method, repetition, splits, args, report)]
    if method == 'bayesian':
        return bayesian_population_searches(splits, args, report)
    return sobol_population_searches(splits, args, report)


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

        def report(row):
            writer.writerow(row)
            file.flush()  # an interrupted run keeps every finished evaluation
            print(f'{row["method"]} repetition {row["repetition"]}/{args.repetitions} evaluation '
                  f'{row["iteration"]}/{args.evaluations}: lr {row["learning_rate"]:.6g} wd {row["weight_decay"]:.6g} '
                  f'-> validation loss {row["val_loss"]:.4f} accuracy {row["val_accuracy"]:.4f} '
                  f'({row["seconds"]:.1f} s)', flush=True)

        for method in args.method:
            method_rows = run_searches(method, splits, args, report)
            for repetition in range(1, args.repetitions + 1):
                print_search_table([row for row in method_rows if row['repetition'] == repetition], args)
            rows += method_rows
    print_summary_table(rows, args.method)


if __name__ == '__main__':
    main()
