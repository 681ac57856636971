"""Benchmark tables: every evaluation answered from a finished `grid` run with curves instead of being trained, a
third way to train beside local_training.py and cluster.py. A row's validation and test loss and accuracy are
interpolated bilinearly, in the coordinates the searches see, between the four grid points around its point, from
the replica (the grid run's repetition) its network seed picks, at its epochs.
"""
import bisect
import gzip
import hashlib
import math
import os

import numpy as np

import results
import searches

# What a table must share with the run it answers (in the order a difference is named): the rest is the searches'
SHARED_SETTINGS = ('dataset', 'learning_rate_bounds', 'weight_decay_bounds', 'lr_scale', 'epochs', 'training_size',
                   'validation_size', 'batch_size')
SCORES = ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')
OUTSIDE = 1e-9  # how far (relative to the axis) a point may stray from the table's box or a grid line by rounding


class TableError(ValueError):
    """A table that cannot answer this run, or a point it cannot answer (one line)."""


def file_hash(*paths):
    """The SHA-256 of the files' contents (a .gz file's uncompressed), in order: what a run's configuration records of
    its table, whether its curves are gzipped or not."""
    digest = hashlib.sha256()
    for path in paths:
        with (gzip.open if os.fspath(path).endswith('.gz') else open)(path, 'rb') as file:
            for block in iter(lambda: file.read(1 << 20), b''):
                digest.update(block)
    return digest.hexdigest()


def check_settings(path, table_settings, run_settings):
    """TableError naming the first setting the run does not share with the table."""
    for name in SHARED_SETTINGS:
        table_value, run_value = (list(value) if isinstance(value, tuple) else value
                                  for value in (table_settings[name], run_settings[name]))
        if table_value != run_value:
            raise TableError(f'{path} was built with {name} {table_value!r}, this run has {run_value!r}: a table '
                             'answers only runs of its own settings')


class Table:
    """A grid run's scores: made from the grid's axes (its values of each coordinate, as the searches see them),
    its curves (an array of replica x first coordinate x second coordinate x epoch x the four SCORES) and whether the
    searches see the learning rate's log10 (--lr-scale log)."""

    def __init__(self, axes, curves, *, log_learning_rate):
        self.axes, self.curves, self.log_learning_rate = axes, curves, log_learning_rate
        self.replicas = len(curves)

    def lowest_loss(self):
        """The lowest validation loss the table answers at its epochs: a grid point's (bilinear interpolation
        takes its extremes at the corners)."""
        return float(np.nanmin(self.curves[:, :, :, -1, 0]))

    def coordinates(self, row):
        """The row's point as the searches see it."""
        learning_rate = math.log10(row['learning_rate']) if self.log_learning_rate else row['learning_rate']
        return learning_rate, row['weight_decay']

    def scores(self, row, *, curve_from=None):
        """The row's scores interpolated at its epochs, from the replica its seed picks, with `seconds` 0; with
        curve_from (the epochs its network had before), also its curve: the scores after each epoch it adds."""
        weights = [self.corners(axis, value) for axis, value in zip(self.axes, self.coordinates(row))]
        replica = self.curves[row['seed'] % self.replicas]

        def at(epoch):
            total = np.zeros(len(SCORES))
            for i, weight_i in weights[0]:
                for j, weight_j in weights[1]:
                    total += weight_i * weight_j * replica[i, j, epoch - 1]
            return [float(value) for value in total]
        scores = dict(zip(SCORES, at(row['epochs'])), seconds=0.0)
        if curve_from is not None:
            scores['curve'] = [at(epoch) for epoch in range(curve_from + 1, row['epochs'] + 1)]
        return scores

    def corners(self, axis, value):
        """The grid indices around `value` on `axis` with their linear weights, those of weight 0 left out (a
        diverged neighbour's NaN would otherwise spoil an exact grid point); TableError outside the axis."""
        low, high = axis[0], axis[-1]
        tolerance = OUTSIDE * (high - low)
        if not low - tolerance <= value <= high + tolerance:
            raise TableError(f'the point {value!r} is outside the table\'s range {low!r} to {high!r}')
        value = min(max(value, low), high)
        upper = min(max(bisect.bisect_right(axis, value), 1), len(axis) - 1)
        fraction = (value - axis[upper - 1]) / (axis[upper] - axis[upper - 1])
        if min(fraction, 1 - fraction) < OUTSIDE * (len(axis) - 1):  # a grid point, but for rounding
            fraction = round(fraction)
        return [(index, weight) for index, weight in ((upper - 1, 1 - fraction), (upper, fraction)) if weight]


class TableTraining:
    """Answers rows from a table instead of training them (local_training.LocalTraining and cluster.RayTraining train
    them): start(rows) returns a function that returns their scores, with curves if the run records them."""

    def __init__(self, path, table, sha256, args):
        self.table, self.sha256, self.args = table, sha256, args
        self.device_name = f'the table {path}'  # what the results' configuration lists as the rows' device

    def start(self, rows):
        def scores(row):
            before = searches.search_class(row['method']).epochs_before(row, evaluations=self.args.evaluations,
                                                                         epochs=self.args.epochs)
            return self.table.scores(row, curve_from=before if self.args.curves else None)
        answered = [scores(row) for row in rows]  # a point it cannot answer is refused before anything is written
        return lambda: answered

    @classmethod
    def of_grid_run(cls, path, grid_args, recorded, args, *, box):
        """The training of run `args` by the finished grid run with curves in results file `path` (its arguments
        grid_args, its rows recorded, the box its searches saw); TableError (one line) if it cannot answer it."""
        if 'grid' not in grid_args.method or not grid_args.curves or grid_args.table is not None:
            raise TableError(f'{path} is no table: a table is a run of method grid with --curves that trained its '
                             f'networks (its methods are {",".join(grid_args.method)}, curves {grid_args.curves}, '
                             f'table {grid_args.table})')
        check_settings(path, vars(grid_args), vars(args))
        rows = [row for (method, _, _), row in recorded.items() if method == 'grid']
        if len(rows) < grid_args.repetitions * grid_args.evaluations:
            raise TableError(f'{path} is not finished: it records {len(rows)} of its '
                             f'{grid_args.repetitions * grid_args.evaluations} grid evaluations')
        curves_file = next((name for name in (results.curves_path(path), results.curves_path(path) + '.gz')
                            if os.path.exists(name)), None)
        if curves_file is None:
            raise TableError(f'{results.curves_path(path)} (or .gz) is missing: the curves of the table {path}')
        curves = results.read_curves(curves_file, recorded, lambda row: 0)[0]  # a grid trains fresh networks
        side = math.isqrt(grid_args.evaluations)
        values = np.empty((grid_args.repetitions, side, side, grid_args.epochs, len(SCORES)))
        for row in rows:
            values[(row['repetition'] - 1, *divmod(row['iteration'] - 1, side))] = curves[
                'grid', row['repetition'], row['iteration']]
        table = Table(searches.grid_axes(box, evaluations=grid_args.evaluations), values,
                      log_learning_rate=grid_args.lr_scale == 'log')
        return cls(path, table, file_hash(path, curves_file), args)
