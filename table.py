"""Benchmark tables: every evaluation answered from a finished `grid` run with curves instead of being trained, a
third way to train beside local_training.py and cluster.py. A row is answered as one real network at its point: at a
grid point the network of the replica (the grid run's repetition) its seed picks; between grid points the replicas'
mean interpolated bilinearly, in the coordinates the searches see, with one network's training noise drawn for its
seed and point (Table.curve); at its epochs.
"""
import bisect
import contextlib
import gzip
import hashlib
import math
import os

import numpy as np
from scipy import interpolate, optimize, stats

import files
import results
import searches

# What a table must share with the run it answers (in the order a difference is named): the rest is the searches'
SHARED_SETTINGS = ('dataset', 'learning_rate_bounds', 'weight_decay_bounds', 'lr_scale', 'epochs', 'training_size',
                   'validation_size', 'batch_size')
SCORES = ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')
LOSSES = np.array([True, False, True, False])  # which SCORES are losses (at or above 0), the others accuracies
OUTSIDE = 1e-9  # how far (relative to the axis) a point may stray from the table's box or a grid line by rounding
# The answer rule between grid points (Table.curve), recorded in the configuration of every run on a table (a run made
# under another rule is not resumed)
NOISE_POOL = 32
NOISE_MARGIN = 1.0
ANSWER_RULE = {'name': 'noise-keeping', 'pool': NOISE_POOL, 'margin': NOISE_MARGIN}
# Along a log-scaled learning rate the loss's valley is curved at the grid's spacing, and bilinear interpolation would
# answer above it (measured in docs/tables.md): there the expected scores follow modified Akima splines along the
# learning rate (they do not overshoot where the loss levels off), still linear along the weight decay
ALONG_LOG_LEARNING_RATE = 'makima'
# With three replicas or more the skewness the donors' deviations lost is added back (Table.curve); the standardised
# deviations that measure it are clipped at this many scales, so that a few unstable networks cannot decide it
SKEW_CLIP = 5.0


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


class Table:
    """A grid run's scores: made from the grid's axes (its values of each coordinate, as the searches see them),
    its curves (an array of replica x first coordinate x second coordinate x epoch x the four SCORES, two replicas or
    more) and whether the searches see the learning rate's log10 (--lr-scale log). It answers a network (its seed and
    point) as one real network: see curve()."""

    def __init__(self, axes, curves, *, log_learning_rate):
        self.axes, self.curves, self.log_learning_rate = axes, curves, log_learning_rate
        self.replicas = len(curves)
        if self.replicas < 2:
            raise TableError(f'a table needs two replicas or more to measure the training noise, it has '
                             f'{self.replicas}')
        self.trained = np.isfinite(curves[:, :, :, -1, 0])  # replica x grid point: whether that network did not diverge
        counts = self.trained.sum(axis=0)[..., None, None]
        with np.errstate(invalid='ignore'):  # NaN where every replica diverged
            self.trained_means = np.where(self.trained[..., None, None], curves, 0).sum(axis=0) / counts
            # each replica's deviation from the replicas' mean, scaled to one network's variance
            self.deviations = (curves - curves.mean(axis=0)) * math.sqrt(self.replicas / (self.replicas - 1))
        self.levels = self.trained_means[:, :, -1, 0].ravel()  # per grid point: its mean final validation loss
        self.donors = np.flatnonzero(np.isfinite(self.deviations).all(axis=(0, 3, 4)).ravel())
        if not len(self.donors):
            raise TableError('a table needs a grid point where no replica diverged to measure the training noise')
        # replica x donor x epoch x score: the deviations the noise is drawn from
        self.donated = donated = self.deviations.reshape(self.replicas, -1, *curves.shape[3:])[:, self.donors]
        self.spread = 1.4826 * np.median(np.abs(donated), axis=(0, 1))  # epoch x score: the noise's robust deviation
        # per donor, epoch and score: the noise's scale there, the root mean square deviation of the NOISE_POOL donors
        # of the nearest levels; and per epoch and score the skewness the rule adds (see curve)
        levels = self.levels[self.donors]
        nearest = np.argsort(np.abs(levels[:, None] - levels), axis=1, kind='stable')[:, :NOISE_POOL]
        self.scale = np.sqrt((donated ** 2).mean(axis=0)[nearest].mean(axis=1))
        standard = np.clip(np.divide(donated, self.scale, out=np.zeros_like(donated), where=self.scale > 0),
                           -SKEW_CLIP, SKEW_CLIP).reshape(-1, *curves.shape[3:])
        kept = (self.replicas - 2) / math.sqrt(self.replicas * (self.replicas - 1))
        self.square_weight, self.norm = np.zeros(curves.shape[3:]), np.ones(curves.shape[3:])
        for index in np.ndindex(*curves.shape[3:]) if kept else ():
            self.square_weight[index], self.norm[index] = skew_restoring(standard[:, index[0], index[1]], kept)
        # per line of weight decay: whether every grid point on it trained, and then the splines along a log-scaled
        # learning rate (the lines' weight decay is the last axis but two of trained_means)
        self.curved = np.isfinite(self.trained_means).all(axis=(0, 2, 3)) & log_learning_rate
        self.splines = interpolate.Akima1DInterpolator(
            axes[0], np.where(self.curved[:, None, None], self.trained_means, 0), axis=0,
            method=ALONG_LOG_LEARNING_RATE) if self.curved.any() else None
        self.answer_rule = {**ANSWER_RULE, **({'skew_clip': SKEW_CLIP} if kept else {}),
                            **({'along_log_learning_rate': ALONG_LOG_LEARNING_RATE} if log_learning_rate else {})}

    def lowest_loss(self):
        """The lowest validation loss of the table's networks at its epochs (a grid point's)."""
        return float(np.nanmin(self.curves[:, :, :, -1, 0]))

    def evaluate(self, learning_rate, weight_decay, epochs, seed=0):
        """The scores ({name: value} for SCORES) of the network of this seed trained `epochs` epochs at this point, by
        the rule a run on the table answers with (see curve): for any optimiser, without test.py. The learning rate as
        trained (not its log10); TableError for a point outside the table's box or epochs outside 1 to its epochs."""
        if not isinstance(epochs, (int, np.integer)) or not 1 <= epochs <= self.curves.shape[3]:
            raise TableError(f'epochs {epochs!r} is not a whole number from 1 to the table\'s {self.curves.shape[3]}')
        return dict(zip(SCORES, map(float, self.curve(learning_rate, weight_decay, seed)[epochs - 1])))

    def scores(self, row, *, curve_from=None):
        """The row's scores at its epochs (see curve), with `seconds` 0; with curve_from (the epochs its network had
        before), also its curve: the scores after each epoch it adds."""
        curve = self.curve(row['learning_rate'], row['weight_decay'], row['seed'])
        scores = dict(zip(SCORES, map(float, curve[row['epochs'] - 1])), seconds=0.0)
        if curve_from is not None:
            scores['curve'] = curve[curve_from:row['epochs']].tolist()
        return scores

    def curve(self, learning_rate, weight_decay, seed):
        """The scores (epochs x SCORES) after each epoch of the network of this seed at this point, as one real
        network's: at a grid point, the network of the replica the seed picks, exactly. Between grid points, drawn
        from a generator seeded by the seed and the point (so the same network always answers the same):
        - it diverges with the share of the replicas that diverged at the four grid points around it, interpolated
          bilinearly (its curve is then that of a diverged replica at the corner weighing most);
        - otherwise its expected scores are those of the replicas that trained, their mean interpolated bilinearly in
          the searches' coordinates, and its noise has one network's variance: it is one replica's deviation from the
          replicas' mean at a donor grid point, scaled to one network's variance, for the whole curve (every epoch and
          score of it, so that a network's epochs, its validation and test scores and its losses and accuracies vary
          together as the replicas' do). The donor is drawn among the NOISE_POOL grid points (the four around left
          out) whose mean final validation loss is nearest the point's, since a network's noise depends on how well
          it learns.
        - the answer stays within the range the trained replicas span at the four grid points around it, widened by
          NOISE_MARGIN robust (median-based) deviations of the table's noise, losses at or above 0 and accuracies
          within 0 and 1."""
        rows, columns, weights = self.corners(learning_rate, weight_decay)
        if weights.max() == 1:
            return self.curves[seed % self.replicas, rows[weights.argmax()], columns[weights.argmax()]]
        draw = np.random.default_rng([seed, *(int(np.float64(value).view(np.uint64))
                                             for value in (learning_rate, weight_decay))])
        trained = self.trained[:, rows, columns]  # replica x corner
        if draw.random() < weights @ (1 - trained.mean(axis=0)):
            replica, corner = np.unravel_index(np.argmax(~trained * weights), trained.shape)
            return self.curves[replica, rows[corner], columns[corner]]
        expected, level = self.mean_around(rows, columns, weights, learning_rate)
        pool = self.donor_pool(level, self.flat(rows, columns))
        donor, donor_replica = pool[draw.integers(len(pool))], draw.integers(self.replicas)
        noise = self.donated[donor_replica, donor]
        if self.replicas > 2:  # with two, no skewness is measured and none is added
            noise = self.scale[donor] * skewed(np.divide(noise, self.scale[donor], out=np.zeros_like(noise),
                                                         where=self.scale[donor] > 0), self.square_weight, self.norm)
        return self.bounded(expected + noise, rows, columns)

    def bounded(self, answer, rows, columns):
        """The curve (epochs x SCORES) held within the range the trained replicas span at these grid points, widened
        by NOISE_MARGIN robust deviations of the table's noise, losses at or above 0 and accuracies within 0 and 1."""
        around = np.where(self.trained[:, rows, columns][..., None, None], self.curves[:, rows, columns], np.nan)
        margin = NOISE_MARGIN * self.spread
        answer = np.clip(answer, np.nanmin(around, axis=(0, 1)) - margin, np.nanmax(around, axis=(0, 1)) + margin)
        return np.where(LOSSES, np.maximum(answer, 0), np.clip(answer, 0, 1))

    def donor_pool(self, level, excluded=()):
        """The NOISE_POOL donors (positions in donors) whose mean final validation loss is nearest `level`, leaving
        out the grid points `excluded` (flat indices) unless nothing else is left (a 2 x 2 grid is one cell)."""
        candidates = np.flatnonzero(~np.isin(self.donors, excluded))
        candidates = candidates if len(candidates) else np.arange(len(self.donors))
        return candidates[np.argsort(np.abs(self.levels[self.donors[candidates]] - level), kind='stable')[:NOISE_POOL]]

    def expected(self, learning_rate, weight_decay):
        """The curve (epochs x SCORES) that the answers between grid points scatter around at this point: the
        trained replicas' mean, interpolated as curve() does (NaN where every replica around diverged)."""
        return self.mean_around(*self.corners(learning_rate, weight_decay), learning_rate)[0]

    def corners(self, learning_rate, weight_decay):
        """The four grid points around a point (their first and second coordinates' indices) and their bilinear
        weights, in the coordinates the searches see."""
        point = math.log10(learning_rate) if self.log_learning_rate else learning_rate, weight_decay  # as searched
        (low_i, high_i, fraction_i), (low_j, high_j, fraction_j) = (
            self.cell(axis, value) for axis, value in zip(self.axes, point))
        return [low_i, low_i, high_i, high_i], [low_j, high_j, low_j, high_j], np.array(
            [(1 - fraction_i) * (1 - fraction_j), (1 - fraction_i) * fraction_j, fraction_i * (1 - fraction_j),
             fraction_i * fraction_j])

    def mean_around(self, rows, columns, weights, learning_rate):
        """The replicas' mean curve at a point of this learning rate, interpolated with these weights over the grid
        points around that trained (along a log-scaled learning rate by the splines, where both lines of weight decay
        around have them), and its level (mean final validation loss)."""
        if self.splines is not None and self.curved[columns[:2]].all():
            along = self.splines(math.log10(learning_rate))[columns[:2]]  # on the two lines of weight decay around
            mean = np.tensordot(weights[:2] + weights[2:], along, axes=1)
            return mean, float(mean[-1, 0])
        weights = np.where(self.trained[:, rows, columns].any(axis=0), weights, 0)
        if not weights.any():  # every replica around diverged
            return np.full(self.curves.shape[3:], np.nan), math.nan
        weights = weights / weights.sum()
        used = weights > 0
        return (np.tensordot(weights[used], self.trained_means[rows, columns][used], axes=1),
                weights[used] @ self.levels[self.flat(rows, columns)][used])

    def flat(self, rows, columns):
        """The grid points' indices in the grid's flattened order (that of levels and donors)."""
        return np.ravel_multi_index((rows, columns), self.trained.shape[1:])

    def cell(self, axis, value):
        """(lower, upper, fraction): the grid indices of the interval of `axis` that holds `value`, and how far along
        it (0 or 1 exactly at a grid point, but for rounding); TableError outside the axis."""
        low, high = axis[0], axis[-1]
        tolerance = OUTSIDE * (high - low)
        if not low - tolerance <= value <= high + tolerance:
            raise TableError(f'the point {value!r} is outside the table\'s range {low!r} to {high!r}')
        value = min(max(value, low), high)
        upper = min(max(bisect.bisect_right(axis, value), 1), len(axis) - 1)
        fraction = (value - axis[upper - 1]) / (axis[upper] - axis[upper - 1])
        if min(fraction, 1 - fraction) < OUTSIDE * (len(axis) - 1):  # a grid point, but for rounding
            fraction = round(fraction)
        return upper - 1, upper, fraction


def skewed(standard, square_weight, norm):
    """Standardised noise with a multiple of its centred square added (Cornish and Fisher's first term, held
    monotone: past the square's turning point it adds no more) and divided by norm, which keeps its variance."""
    turn = -0.5 / np.where(square_weight == 0, np.inf, square_weight)
    held = np.where(square_weight > 0, np.maximum(standard, turn), np.minimum(standard, turn))
    return (standard + square_weight * (held ** 2 - 1)) / norm


def skew_restoring(standard, kept):
    """(square_weight, norm) for skewed(): the weight that gives the standardised deviations `standard` (of one
    replica from the replicas' mean, which keep the fraction `kept` of one network's skewness) the skewness of one
    network, and the norm that keeps their variance."""
    def moments(weight):
        moved = skewed(standard, weight, 1.0)
        return moved.std(), stats.skew(moved)
    target = stats.skew(standard) / kept
    weight = optimize.brentq(lambda weight: moments(weight)[1] - target, -0.25, 0.25) if all(
        (moments(bound)[1] - target) * side > 0 for bound, side in ((-0.25, -1), (0.25, 1))) else (
        0.25 * np.sign(target))  # as far as the transform goes
    return weight, moments(weight)[0] / standard.std()


def load(path):
    """The Table in `path`, a finished grid run with curves, checked whole (read as --report reads a results file, its
    curves file plain or gzipped, each curve ending in its row's scores); TableError, or another ValueError, one line
    naming the file, if it is no such table."""
    if not os.path.isfile(path):
        raise TableError(f'{path} is not a table: {"a folder" if os.path.isdir(path) else "there is no such file"}')
    run = results.load_run(path)
    settings = run.settings
    if 'grid' not in settings.method or not settings.curves or settings.table is not None:
        raise TableError(f'{path} is no table: a table is a run of method grid with --curves that trained its '
                         f'networks (its methods are {",".join(settings.method)}, curves {settings.curves}, '
                         f'table {settings.table})')
    rows = [row for (method, _, _), row in run.recorded.items() if method == 'grid']
    if len(rows) < settings.repetitions * settings.evaluations:
        raise TableError(f'{path} is not finished: it records {len(rows)} of its '
                         f'{settings.repetitions * settings.evaluations} grid evaluations')
    curves_files = [name for name in (files.curves_path(path), files.curves_path(path) + '.gz') if os.path.exists(name)]
    if len(curves_files) != 1:
        raise TableError(f'{files.curves_path(path)} and its .gz are both there: a table has one curves file'
                         if curves_files else f'{files.curves_path(path)} (or .gz) is missing: the curves of the '
                                               f'table {path}')
    curves_file = curves_files[0]
    try:
        curves = results.read_curves(curves_file, run.recorded)[0]
    except (OSError, EOFError) as error:  # EOFError: a gzipped file cut short
        raise TableError(f'{curves_file} cannot be read ({getattr(error, "strerror", None) or error})') from None
    side = math.isqrt(settings.evaluations)
    values = np.empty((settings.repetitions, side, side, settings.epochs, len(SCORES)))
    for row in sorted(rows, key=lambda row: (row['repetition'], row['iteration'])):
        curve = np.array(curves['grid', row['repetition'], row['iteration']])
        ends = np.array([row[name] for name in SCORES])
        if not np.array_equal(curve[-1], ends, equal_nan=True) or (
                math.isfinite(row['val_loss']) and not np.isfinite(curve[:, 0]).all()):
            found, recorded = (', '.join(map(repr, scores.tolist())) for scores in (curve[-1], ends))
            raise TableError(f'{curves_file}: the curve of grid repetition {row["repetition"]} iteration '
                             f'{row["iteration"]} ends in {found}, where {path} records {recorded}, or its network '
                             'diverged on the way')
        values[(row['repetition'] - 1, *divmod(row['iteration'] - 1, side))] = curve
    answering = Table(searches.grid_axes(settings.box(), evaluations=settings.evaluations), values,
                      log_learning_rate=settings.lr_scale == 'log')
    answering.path, answering.settings, answering.sha256 = path, settings, file_hash(path, curves_file)
    return answering


class TableTraining:
    """Answers rows from a table instead of training them (local_training.LocalTraining and cluster.RayTraining train
    them): submit(rows) returns a function that returns their scores, with curves if the run records them."""

    def __init__(self, table, args):
        """The training of run `args` (its settings) by `table`; TableError (one line) if the run is not the
        table's."""
        for name in SHARED_SETTINGS:  # the first the run does not share with the table is named
            table_value, run_value = (list(value) if isinstance(value, tuple) else value
                                      for value in (getattr(table.settings, name), getattr(args, name)))
            if table_value != run_value:
                raise TableError(f'{table.path} was built with {name} {table_value!r}, this run has {run_value!r}: '
                                 'a table answers only runs of its own settings')
        self.table, self.curves = table, args.curves
        self.device_name = f'the table {table.path}'  # what the results' configuration lists as the rows' device

    def submit(self, rows):
        answered = [self.table.scores(row, curve_from=row['epochs_before'] if self.curves else None)
                    for row in rows]  # a point it cannot answer is refused before anything is written
        return lambda: answered


def lowest_loss_of(run):
    """The lowest validation loss of the table that results.Run `run` was answered from, found by its path or by its
    path from the results file's folder, with the contents it had (its hash); None for a run trained for real, and
    None, said in a line, where the table is not there as it was."""
    if run.settings.table is None:
        return None
    folder = os.path.dirname(run.path)
    for candidate in (run.settings.table, os.path.join(folder, run.configuration.get('table_relative', '')),
                      os.path.join(folder, run.settings.table)):  # runs made before table_relative: beside the run
        with contextlib.suppress(ValueError, OSError, EOFError):
            answering = load(candidate)
            if answering.sha256 == run.configuration.get('table_sha256'):
                return answering.lowest_loss()
    print(f'{run.path}: its table {run.settings.table} is not there as it was: its best is the lowest loss its methods '
          'found', flush=True)
    return None
