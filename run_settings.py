"""A run's settings: what its results file records of the experiment (the configuration beside the CSV), made from the
flags or read from a saved configuration, checked alike, and the rows they plan: each search made from them, its points
made rows, the rows a finished file holds and those a resume or a report expects of each search.
"""
import dataclasses
import math

import numpy as np

import command_line
import dataset_management
import searches

# A run plans every evaluation and holds its rows in memory before the first trains (the paper's run has 500)
MOST_EVALUATIONS = 200_000  # in all: methods x repetitions x evaluations (Hyperband: its scorings)
# A guided search fits its model on all its evaluations: n x n matrices, about 32 n^2 bytes (800 MB at 5,000)
MOST_GUIDED_EVALUATIONS = 5_000
LARGEST_BOUND = float(np.finfo(np.float32).max)  # of either range: the networks' arithmetic is float32's
# Settings added since results format 3, with the value that the runs of files saved without them had
LATER_SETTINGS = {'training_size': None, 'curves': False, 'table': None}


def is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


# What a saved configuration's setting must be, as a run writes it (a number written as a text is refused)
KINDS = {'an integer': is_integer, 'an integer or null': lambda value: value is None or is_integer(value),
         'a text': lambda value: isinstance(value, str), 'true or false': lambda value: isinstance(value, bool),
         'a text or null': lambda value: value is None or isinstance(value, str),
         'a list of texts': lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value),
         'a list of two numbers': lambda value: isinstance(value, list) and len(value) == 2 and all(
             isinstance(item, (int, float)) and not isinstance(item, bool) for item in value)}
SAVED_KINDS = dict(dataset='a text', validation_size='an integer', training_size='an integer or null',
                   method='a list of texts', learning_rate_bounds='a list of two numbers',
                   weight_decay_bounds='a list of two numbers', lr_scale='a text', evaluations='an integer',
                   init_points='an integer', epochs='an integer', repetitions='an integer', batch_size='an integer',
                   seed='an integer', curves='true or false', table='a text or null')


@dataclasses.dataclass
class Settings:
    """The settings that decide a run's numbers (besides the searches' constants and the library versions): the
    flags of test.py's first group, by the same names."""
    dataset: str
    validation_size: int  # None: the dataset's, filled in by check()
    training_size: int  # None: all the training images before the validation ones
    method: tuple
    learning_rate_bounds: tuple
    weight_decay_bounds: tuple
    lr_scale: str
    evaluations: int
    init_points: int
    epochs: int
    repetitions: int
    batch_size: int
    seed: int
    curves: bool
    table: str  # None: the networks are trained

    @classmethod
    def of(cls, args):
        """The settings among parsed flags (or any object with their names as attributes)."""
        return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})

    @classmethod
    def from_saved(cls, saved, path):
        """The settings a configuration saved beside results file `path` holds (those added since defaulted), checked
        as the flags are; ValueError (one line) naming the first setting missing, of a kind a run does not write, or
        not allowed."""
        saved = {**LATER_SETTINGS, **saved}
        missing = [field.name for field in dataclasses.fields(cls) if field.name not in saved]
        if missing:
            raise ValueError(f'{path}: its configuration has no {", ".join(missing)}')
        for name, kind in SAVED_KINDS.items():
            if not KINDS[kind](saved[name]):
                raise ValueError(f'{path}: its configuration holds {name} {saved[name]!r}, where a run writes {kind}')
        settings = cls(**{name: saved[name] for name in SAVED_KINDS})
        settings.method = tuple(settings.method)
        for name in ('learning_rate_bounds', 'weight_decay_bounds'):  # as the flags read them
            setattr(settings, name, tuple(map(float, saved[name])))
        try:
            settings.check()
        except ValueError as error:
            raise ValueError(f'{path}: its configuration: {error}') from None
        return settings

    def saved(self):
        """The settings as the configuration JSON holds them (lists, not tuples)."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in vars(self).items()}

    def check(self):
        """ValueError (one line, naming the flag, its value and what is allowed) for the first setting that is not
        allowed; the dataset's default validation size filled in."""
        self.validation_size = dataset_management.checked_sizes(self.dataset, self.validation_size, self.training_size)
        unknown = [method for method in self.method if method not in searches.METHODS]
        if unknown or not self.method:
            unknown = unknown or ['']
            raise ValueError(f'invalid method {unknown[0]!r} (choose from {", ".join(searches.METHODS)})')
        if len(set(self.method)) < len(self.method):
            raise ValueError(f'method list {",".join(self.method)!r} names a method twice')
        for name in ('batch_size', 'evaluations', 'epochs', 'repetitions'):
            if getattr(self, name) < 1:
                raise ValueError(f'{command_line.flag(name)} {getattr(self, name)} must be a positive integer')
        if any(map(searches.is_guided, self.method)) and not 1 <= self.init_points <= self.evaluations:
            raise ValueError(f'--init-points {self.init_points} must be between 1 and --evaluations '
                             f'({self.evaluations})')
        for name in ('learning_rate_bounds', 'weight_decay_bounds'):
            low, high = getattr(self, name)
            if not 0 <= low < high <= LARGEST_BOUND:
                raise ValueError(f'{command_line.flag(name)} {low:g} {high:g}: the bounds must satisfy 0 <= LOW < '
                                 f'HIGH <= {LARGEST_BOUND:g}')
        if self.lr_scale not in ('linear', 'log'):
            raise ValueError(f'--lr-scale {self.lr_scale!r} is not allowed: use linear or log')
        if self.lr_scale == 'log' and self.learning_rate_bounds[0] == 0:
            raise ValueError('--lr-scale log needs a positive --learning-rate-bounds LOW (it is 0)')
        if self.seed < 0:
            raise ValueError(f'--seed {self.seed} must be a non-negative integer')
        for method in self.method:
            refusal = searches.search_class(method).refusal(method, evaluations=self.evaluations, epochs=self.epochs,
                                                            ray=None)
            if refusal:
                raise ValueError(refusal)
        if self.total > MOST_EVALUATIONS:
            raise ValueError(f'{len(self.method)} methods x --repetitions {self.repetitions} x --evaluations '
                             f'{self.evaluations} is {self.total:,} evaluations: at most {MOST_EVALUATIONS:,} in one '
                             'run (each is planned and held in memory before the first trains)')
        if any(map(searches.is_guided, self.method)) and self.evaluations > MOST_GUIDED_EVALUATIONS:
            raise ValueError(f'--evaluations {self.evaluations} is too many for a guided search: at most '
                             f'{MOST_GUIDED_EVALUATIONS:,} (its model is fitted on all of them: a Gaussian process '
                             'holds n x n matrices)')

    def box(self):
        """The box the optimizers search: the learning rate's range, or with --lr-scale log its log10's, and the
        weight decay's."""
        learning_rate = tuple(self.learning_rate_bounds)
        if self.lr_scale == 'log':
            return {'log10_learning_rate': tuple(map(math.log10, learning_rate)),
                    'weight_decay': tuple(self.weight_decay_bounds)}
        return {'learning_rate': learning_rate, 'weight_decay': tuple(self.weight_decay_bounds)}

    def search(self, method, repetition):
        """The search of one repetition of a method (searches.METHODS), seeded by seed_for(seed, repetition)."""
        return searches.METHODS[method](self.box(), seed=searches.seed_for(self.seed, repetition),
                                        evaluations=self.evaluations, init_points=self.init_points, epochs=self.epochs)

    def new_row(self, method, repetition, iteration, point):
        """A results row before training: which evaluation it is, its network's seed and the hyperparameters of its
        point of the box (with a Hyperband point's bracket, configuration, epochs and epochs before: see
        searches.HyperbandSearch)."""
        if 'log10_learning_rate' in point:  # kept inside the bounds, which 10 ** log10(bound) can overshoot
            low, high = self.learning_rate_bounds
            learning_rate = min(max(10 ** point['log10_learning_rate'], low), high)
        else:
            learning_rate = point['learning_rate']
        return dict(method=method, repetition=repetition, iteration=iteration, repeat_of=None,
                    bracket=point.get('bracket'), configuration=point.get('configuration'),
                    epochs=point.get('epochs', self.epochs), epochs_before=point.get('epochs_before', 0),
                    seed=searches.seed_for(self.seed, repetition, point.get('configuration', iteration)),
                    learning_rate=float(learning_rate), weight_decay=float(point['weight_decay']))  # not numpy's

    def rows_of(self, method, repetition, points, first_iteration=1):
        """The results rows, before training, of a search's points, numbered from first_iteration."""
        return [self.new_row(method, repetition, iteration, point)
                for iteration, point in enumerate(points, first_iteration)]

    def rows_per_search(self, method):
        """The results rows of one search of a method: its evaluations, or Hyperband's scorings."""
        return searches.search_class(method).rows_per_search(evaluations=self.evaluations, epochs=self.epochs)

    @property
    def total(self):
        """The rows of a finished results file."""
        return self.repetitions * sum(map(self.rows_per_search, self.method))

    def expected_rows(self, method, repetition, recorded):
        """The rows, before training, that a run makes of a search whose recorded rows are `recorded` (in iteration
        order), as far as its plan decides them: the search is replayed, told the recorded rows, as long as it fits
        no model (a planned or multi-fidelity search to its end, a guided one through its init points); of a guided
        search's later rows, its model's proposals (a resume replays those, fitting it), only the bracket,
        configuration, epochs and seeds are planned (a repeat's seed is that of the row it repeats)."""
        replayed = self.init_points if searches.is_guided(method) else len(recorded)
        search, rows = self.search(method, repetition), []
        while len(rows) < min(replayed, len(recorded)) and (points := search.ask()):
            rows += self.rows_of(method, repetition, points, len(rows) + 1)
            search.tell(recorded[len(rows) - len(points):len(rows)])
        return rows + [{**row, 'bracket': None, 'configuration': None, 'epochs': self.epochs, 'epochs_before': 0,
                        'seed': searches.seed_for(self.seed, repetition, row['repeat_of'] or row['iteration'])}
                       for row in recorded[len(rows):]]
