"""A run's files: their names beside the results CSV, and writing each whole or not at all: a file is written to a
partial file of its own beside it and then renamed over the old one, so that a full disk, a lost permission or a stop
mid-write leaves the previous version in place (and no partial file), two writers of the same file (a run and a
--report of it) each rename a whole file of their own (the last rename wins), and the failure is one WriteError naming
the file."""
import contextlib
import os
import tempfile

PARTIAL_SUFFIX = '.partial'
PARTIAL_NAME_CHARACTERS = 8  # tempfile's random part: results.summary.json.k3j9x_2q.partial
UMASK = os.umask(0o022)  # read (it can only be read by setting it), then restored
os.umask(UMASK)
FIGURES = ('convergence', 'convergence-model-epochs', 'points', 'sobol-vs-random')  # the plots beside the results


def path_beside(output, suffix):
    """A file named after the results CSV, plain or gzipped: results.csv (or results.csv.gz), '.summary.json' ->
    results.summary.json."""
    return (output[:-len('.csv.gz')] if output.endswith('.csv.gz') else os.path.splitext(output)[0]) + suffix


def configuration_path(output):
    """results.csv -> results.config.json, the run's configuration."""
    return path_beside(output, '.config.json')


def curves_path(output):
    """results.csv -> results.curves.csv, every network's scores after each epoch (--curves)."""
    return path_beside(output, '.curves.csv')


def report_paths(output):
    """{name: path} of the report: results.summary.json, results.summary.md and the plots, results.points.png, ..."""
    return {'summary.json': path_beside(output, '.summary.json'), 'summary.md': path_beside(output, '.summary.md'),
            **{name: path_beside(output, f'.{name}.png') for name in FIGURES}}


def searches_path(output):
    """results.csv -> results.searches.pickle, the searches saved between rounds (search_states.py)."""
    return path_beside(output, '.searches.pickle')


def weights_folder(output):
    """results.csv -> results.weights/, Hyperband's networks between rungs (rung_weights.py)."""
    return path_beside(output, '.weights')


def lock_path(output):
    """The lock file of a results CSV while a run writes it: results.csv -> results.lock, beside the file that
    links to it lead to (one lock whatever path names the file)."""
    return path_beside(os.path.realpath(output), '.lock')


def run_files(output):
    """The files of the run in `output`: the CSV, its configuration, curves, report, its searches' saved state and
    Hyperband's weights folder."""
    return [output, configuration_path(output), curves_path(output), *report_paths(output).values(),
            searches_path(output), weights_folder(output)]


class WriteError(Exception):
    """A file of the run could not be written (the OSError, a full disk or a lost permission, is its cause); its
    previous version, if any, is as it was. One line."""

    def __init__(self, path, error):
        super().__init__(f'{path} cannot be written ({error.strerror or error})')


def longest_partial_path(path):
    """The longest name a partial file of `path` can have (to check that a folder takes it)."""
    return f'{os.fspath(path)}.{"x" * PARTIAL_NAME_CHARACTERS}{PARTIAL_SUFFIX}'


def write_whole(path, write, *, binary=False):
    """write(file) fills a new partial file beside `path`, unique to this call, which then replaces `path` (synced to
    disk first); WriteError if that fails, the partial file removed and `path` as it was."""
    folder, name = os.path.split(os.fspath(path))
    try:
        descriptor, partial = tempfile.mkstemp(suffix=PARTIAL_SUFFIX, prefix=f'{name}.', dir=folder or '.')
    except OSError as error:
        raise WriteError(path, error) from error
    try:
        try:
            with open(descriptor, 'wb' if binary else 'w') as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(partial, 0o666 & ~UMASK)  # mkstemp makes it private; a file written whole gets open()'s mode
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
    except OSError as error:
        raise WriteError(path, error) from error
