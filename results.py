"""The results file: one CSV row per evaluation, appended and synced as each ends, and the configuration JSON beside
it. On resume the file is read back and checked against the run's settings (settings.py), a last row cut short by a
stop is dropped, anything else wrong is refused; load_run reads a finished or partial run the same way; --fresh moves
old files aside. An append that fails (a full disk) leaves the file as it was. Errors are exceptions with one-line
messages.
"""
import contextlib
import csv
import dataclasses
import fcntl
import gzip
import importlib.metadata
import io
import itertools
import json
import math
import os
import platform
import re
import tempfile
from typing import NamedTuple

import threadpoolctl

import files
import searches
import run_settings
import stopping

# repeat_of: the earlier iteration whose point a guided search proposes again (its scores are that row's), else empty;
# bracket and configuration: a Hyperband row's (else empty), epochs: those its network was trained for when scored
COLUMNS = ('method', 'repetition', 'iteration', 'repeat_of', 'bracket', 'configuration', 'epochs', 'seed',
           'learning_rate', 'weight_decay', 'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy', 'seconds')
# The curves file (--curves): a row's scores after each epoch its training added
CURVE_COLUMNS = ('method', 'repetition', 'iteration', 'epoch', 'val_loss', 'val_accuracy', 'test_loss',
                 'test_accuracy')
SCORE_COLUMNS = ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy', 'seconds')
INTEGER_COLUMNS = ('repetition', 'iteration', 'repeat_of', 'bracket', 'configuration', 'epochs', 'seed')
OPTIONAL_COLUMNS = ('repeat_of', 'bracket', 'configuration')  # empty where they do not apply
# What the plan decides of a row (a guided search's point is its model's: a resume checks it as it replays the search)
PLANNED_COLUMNS = ('bracket', 'configuration', 'epochs', 'seed', 'learning_rate', 'weight_decay')
# 3: the epochs, bracket and configuration columns (multi-fidelity searches); 2: 'bayesian' fits the authors'
# Gaussian process and the CSV has repeat_of. Files of format 2 still resume (in format 2: their rows' epochs are the
# run's --epochs) and report; files of format 1 do neither.
FORMAT = 3
COLUMNS_OF_FORMAT = {3: COLUMNS, 2: tuple(name for name in COLUMNS if name not in ('bracket', 'configuration',
                                                                                  'epochs'))}
# Their versions are saved in the configuration, with those of the methods' own packages (searches.packages): another
# version is another configuration
PACKAGES = ('torch', 'torchvision', 'bayesian-optimization', 'optunity', 'numpy', 'scipy', 'scikit-learn')
# A point a resumed search asks for that is this close to the recorded one (a fraction of each range searched)
# differs only in the last digits of its model's fits: another machine's arithmetic, not another search
LAST_DIGITS = 1e-6


class ResultsFileError(ValueError):
    """A results file or configuration that cannot be used as asked; nothing has been changed."""


class ResumeMismatchError(Exception):
    """A recorded evaluation is not the one the resumed search asks for."""


class Run(NamedTuple):
    """A finished or partial run read from its results file (load_run): its path, settings, saved configuration and
    the rows it records by (method, repetition, iteration)."""
    path: str
    settings: run_settings.Settings
    configuration: dict
    recorded: dict

    @property
    def rows(self):
        return list(self.recorded.values())


def configuration(settings, fixed):
    """What is saved beside the CSV: the format, the Settings that decide the results, the `fixed` values that
    decide them besides (the searches' constants, the table's hash and answer rule) and the library versions (the
    devices that trained its rows and the machines that ran its searches are added as they write)."""
    versions = {'python': platform.python_version(),
                **{package: installed_version(package) for package in (*PACKAGES, *searches.packages(settings.method))}}
    return {'results_format': FORMAT, **settings.saved(), **fixed, 'versions': versions}


def settings_of(configuration):
    """A saved configuration without its library versions, devices and machines: the settings that decide the
    numbers."""
    return {name: value for name, value in configuration.items() if name not in ('versions', 'devices', 'machines')}


def machine():
    """This machine as a model fit's arithmetic goes: the CPU's model and vector instruction sets, and the BLAS cores
    that threadpoolctl reports (numpy's and scipy's, loaded by then): another of either can change a Gaussian-process
    fit, and so a guided search's next point, in its last digits."""
    fields = {}
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:  # the first processor's fields
                name, _, value = line.partition(':')
                fields.setdefault(name.strip(), value.strip())
    cpu = fields.get('model name') or platform.processor() or platform.machine()
    if 'cpu family' in fields:  # one model name can cover several families and models
        cpu += f', family {fields["cpu family"]} model {fields.get("model", "?")}'
    extensions = sorted(flag for flag in fields.get('flags', '').split() if flag.startswith(('avx', 'amx', 'fma')))
    blas = sorted({f'{library["internal_api"]} {library["version"]} {library.get("architecture") or ""}'.strip()
                   for library in threadpoolctl.threadpool_info() if library['user_api'] == 'blas'})
    return f'{cpu} ({" ".join(extensions) or "no AVX"}); BLAS {", ".join(blas) or "unknown"}'


def installed_version(package):
    """The package's version, or 'not installed' (greenlet is optional to Optuna, which then computes otherwise)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return 'not installed'


def curve_lines(rows, *, header):
    """The curves file's lines (as one text) of the rows that have a curve: one per epoch their training added,
    numbered from the epochs the network had before (a Hyperband rung's) to the row's epochs."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator='\n')
    if header and any('curve' in row for row in rows):
        writer.writerow(CURVE_COLUMNS)
    for row in rows:
        first = row['epochs'] - len(row.get('curve', [])) + 1
        writer.writerows([row['method'], row['repetition'], row['iteration'], epoch, *scores]
                         for epoch, scores in enumerate(row.get('curve', []), first))
    return text.getvalue()


def read_bytes(path):
    """The contents of file `path`, gunzipped where its name ends in .gz."""
    with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as file:
        return file.read()


def read_curves(path, recorded):
    """The curves in curves file `path` (gzipped if its name ends in .gz) of the recorded rows, {(method, repetition,
    iteration): [[val_loss, val_accuracy, test_loss, test_accuracy] after each epoch its training added]}, and how
    many of its bytes to keep: the lines of rows the results file does not record (a run writes a population's
    curves just before its rows) and a last line cut short are dropped. ValueError (one line) for anything else: a
    line this code does not write, or a row trained without its whole curve (from its epochs_before + 1 to its
    epochs). OSError or EOFError if the file cannot be read."""
    data = read_bytes(path)
    lines = data[:data.rfind(b'\n') + 1].split(b'\n')[:-1]
    if not lines or lines[0] != ','.join(CURVE_COLUMNS).encode():
        raise ValueError(f'{path} line 1: the header is not {",".join(CURVE_COLUMNS)}')
    curves, kept, unrecorded = {}, len(lines[0]) + 1, None
    for number, line in enumerate(lines[1:], 2):
        fields = line.decode('ascii', errors='replace').split(',')
        names = ('repetition', 'iteration', 'epochs', *SCORE_COLUMNS[:4])  # as append() writes these columns
        if len(fields) != len(CURVE_COLUMNS) or not all(map(as_written, names, fields[1:])):
            raise ValueError(f'{path} line {number}: not a line of a curve as this code writes them')
        key = fields[0], int(fields[1]), int(fields[2])
        if key not in recorded:
            unrecorded = unrecorded or number
            continue
        if unrecorded:
            raise ValueError(f'{path} line {number}: the curve of a recorded row after line {unrecorded}, whose row is '
                             'not recorded (a line moved or a row deleted)')
        curves.setdefault(key, []).append((int(fields[3]), list(map(float, fields[4:]))))
        kept += len(line) + 1  # bytes
    for key, row in recorded.items():
        epochs, name = [epoch for epoch, _ in curves.get(key, [])], f'{key[0]} repetition {key[1]} iteration {key[2]}'
        if row['repeat_of'] is not None and epochs:
            raise ValueError(f'{path}: {name} has a curve, but a repeated point trains nothing')
        if row['repeat_of'] is None and epochs != list(range(row['epochs_before'] + 1, row['epochs'] + 1)):
            raise ValueError(f'{path}: the curve of {name} is missing or does not run epoch by epoch from epoch '
                             f'{row["epochs_before"] + 1} to its {row["epochs"]}')
    return {key: [scores for _, scores in curve] for key, curve in curves.items()}, kept


def read_configuration(path):
    """A saved configuration; ResultsFileError if it cannot be read as one."""
    try:
        with open(path) as file:
            saved = json.load(file)
    except (OSError, ValueError) as error:
        raise ResultsFileError(f'{path} cannot be read as a configuration ({error})') from None
    if not isinstance(saved, dict):
        raise ResultsFileError(f'{path} cannot be read as a configuration (it holds no JSON object)')
    versions = saved.get('versions', {})
    if not (isinstance(versions, dict) and all(isinstance(value, str) for value in versions.values())):
        raise ResultsFileError(f'{path}: its versions {versions!r} are not package names with version texts')
    for name in ('devices', 'machines'):
        names = saved.get(name, [])
        if not (isinstance(names, list) and all(isinstance(item, str) for item in names)):
            raise ResultsFileError(f'{path}: its {name} {names!r} are not a list of {name[:-1]} names')
    return saved


def configuration_differences(saved, current):
    """'name SAVED (now CURRENT)' for every setting or version that differs (the devices may, and so may the table's
    paths: a table is the same by its hash, table_sha256, whatever path names it)."""
    flat = [{**settings_of(config),
             **{f'{package} version': version for package, version in config.get('versions', {}).items()}}
            for config in (saved, current)]
    return [f'{name} {flat[0].get(name)!r} (now {flat[1].get(name)!r})'
            for name in sorted(flat[0].keys() | flat[1].keys()) if name not in ('table', 'table_relative')
            and not same_value(flat[0].get(name), flat[1].get(name))]


def same_value(first, second):
    """Whether two JSON values are the same: numbers by value (0 and 0.0), lists item by item, and never a number
    and a text or a truth value ('1' and True are not 1)."""
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(map(same_value, first, second))

    def kind(value):
        return 'number' if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value)
    return kind(first) == kind(second) and first == second


def parse_row(fields, settings, columns=COLUMNS):
    """A results row from its CSV fields in `columns` (those of its file's format), typed, with every column (a
    format-2 row's epochs are the settings'); ValueError (one line) unless each value is one a run of these settings
    could write (check_plan then checks the rows against the plan's own)."""
    if len(fields) != len(columns):
        raise ValueError(f'{len(fields)} fields instead of {len(columns)}')
    row = {'bracket': None, 'configuration': None, 'epochs': str(settings.epochs), **dict(zip(columns, fields))}
    if row['method'] not in settings.method:
        raise ValueError(f'method {row["method"]!r} is not one of {", ".join(settings.method)}')
    row = {name: row[name] for name in COLUMNS}
    for name in COLUMNS[1:]:
        if row[name] is None:
            continue
        if not as_written(name, row[name]):
            raise ValueError(f'{name} {row[name]!r} is not a number as this code writes them')
        row[name] = None if row[name] == '' else (int if name in INTEGER_COLUMNS else float)(row[name])
    ranges = {'repetition': (1, settings.repetitions), 'iteration': (1, settings.rows_per_search(row['method'])),
              'epochs': (1, settings.epochs), 'learning_rate': settings.learning_rate_bounds,
              'weight_decay': settings.weight_decay_bounds, 'val_loss': (0, math.inf), 'val_accuracy': (0, 1),
              'test_loss': (0, math.inf), 'test_accuracy': (0, 1), 'seconds': (0, math.inf)}
    for name, (low, high) in ranges.items():
        if not low <= row[name] <= high and not (name.endswith('loss') and math.isnan(row[name])):  # NaN: diverged
            raise ValueError(f'{name} {row[name]!r} is outside {low:g}..{high:g}')
    if row['repeat_of'] is not None and not (searches.is_guided(row['method'])
                                             and 1 <= row['repeat_of'] < row['iteration']):
        raise ValueError(f'repeat_of {row["repeat_of"]} is not an earlier iteration of a guided search')
    return row


def as_written(name, text):
    """Whether `text` is column `name`'s number exactly as append() writes it (Python's str of an int or a float;
    repeat_of may be empty): no spaces, underscores, leading zeros, other digits or line-ending characters."""
    if name in OPTIONAL_COLUMNS and text == '':  # not a repeat, not a Hyperband row
        return True
    try:
        return str((int if name in INTEGER_COLUMNS else float)(text)) == text
    except ValueError:
        return False


def starts_a_row(text, settings, columns=COLUMNS):
    """Whether `text` is how append() starts a row of a run of these settings: whole fields, then the start of
    one."""
    *whole, last = text.split(',')
    if len(whole) >= len(columns) or (whole and whole[0] not in settings.method):
        return False
    if not all(map(as_written, columns[1:], whole[1:])):
        return False
    if not whole:
        return any(method.startswith(last) for method in settings.method)
    return bool(re.fullmatch(r'[0-9.e+-]*|n(an?)?|i(nf?)?', last))


def same_evaluation(repeat, original):
    """Whether a repeat row holds the point and scores (all but the time) of its original row."""
    names = ('learning_rate', 'weight_decay', 'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')
    return original is not None and all(str(repeat[name]) == str(original[name]) for name in names)  # NaN: 'nan'


def read(path, settings, results_format=FORMAT):
    """The rows a results file in `results_format` (gzipped where its name ends in .gz) records, by (method,
    repetition, iteration), and how many of its bytes to keep: a last line cut while it was being written (it has no
    newline yet) is dropped. ValueError (one line) for any other content a run of these settings could not have
    written; OSError if the file cannot be read. Each row carries its epochs_before, as the plan makes it."""
    columns = COLUMNS_OF_FORMAT[results_format]
    data = read_bytes(path)  # a finished run may be gzipped to commit it
    keep = data.rfind(b'\n') + 1
    cut_line = data[keep:].decode('utf-8', errors='replace')
    cut_short = ','.join(columns).startswith(cut_line) if keep == 0 else starts_a_row(cut_line, settings, columns)
    if not cut_short:
        raise ValueError(f'{path}: its last line, {cut_line[:40]!r}, is neither whole nor a row cut short')
    try:
        lines = data[:keep].decode('utf-8').split('\n')[:-1]
    except UnicodeDecodeError as error:
        raise ValueError(f'{path}: not a text file ({error.reason} at byte {error.start})') from None
    if lines and lines[0] != ','.join(columns):
        raise ValueError(f'{path} line 1: the header is not {",".join(columns)}')
    recorded, line_numbers = {}, {}
    for number, line in enumerate(lines[1:], 2):
        fields = line.split(',') if line else []  # as append() writes them: no quoting, no carriage return
        try:
            row = parse_row(fields, settings, columns)
        except ValueError as error:
            raise ValueError(f'{path} line {number}: {error}') from None
        key = row['method'], row['repetition'], row['iteration']
        if key in recorded:
            raise ValueError(f'{path} line {number}: {key[0]} repetition {key[1]} iteration {key[2]} is recorded twice')
        if row['repeat_of'] is not None and not same_evaluation(row, recorded.get(key[:2] + (row['repeat_of'],))):
            raise ValueError(f'{path} line {number}: a repeat of iteration {row["repeat_of"]}, which the file does '
                             'not record at the same point with the same scores')
        recorded[key], line_numbers[key] = row, number
    check_plan(path, recorded, line_numbers, settings)
    return recorded, keep


def check_plan(path, recorded, line_numbers, settings):
    """ValueError (one line) naming the first line whose row is not the one the plan makes of it (its bracket,
    configuration, epochs, seed, or point where the plan decides them: Settings.expected_rows): resume and --report
    refuse alike what a run could not have written; before it, the first iteration a search's rows skip (every run
    appends a search's evaluations in order, so a gap is a row deleted or lost, which a resume would append at the end
    and a report would ignore). Each row gets the epochs_before the plan gives it."""
    mismatches = []
    for (method, repetition), keys in itertools.groupby(sorted(recorded), key=lambda key: key[:2]):
        rows = [recorded[key] for key in keys]
        missing = next((number for number, row in enumerate(rows, 1) if row['iteration'] != number), None)
        if missing:
            raise ValueError(f'{path}: {method} repetition {repetition} iteration {missing} is missing, but iteration '
                             f'{rows[-1]["iteration"]} of that search is recorded (a row deleted or lost)')
        for row, expected in zip(rows, settings.expected_rows(method, repetition, rows)):
            row['epochs_before'] = expected['epochs_before']
            wrong = [name for name in PLANNED_COLUMNS if row[name] != expected[name]]
            if wrong:
                mismatches.append((line_numbers[method, repetition, row['iteration']], wrong[0], row, expected))
                break
    if mismatches:
        number, name, row, expected = min(mismatches, key=lambda mismatch: mismatch[0])

        def shown(value):
            return 'empty' if value is None else repr(value)
        raise ValueError(f'{path} line {number} ({row["method"]} repetition {row["repetition"]} iteration '
                         f'{row["iteration"]}): {name} is {shown(row[name])}, where the plan makes it '
                         f'{shown(expected[name])}')


def moves_aside(path):
    """The (old, new) names of the run's existing files moved aside: results.* to results.oldN.*, with the first N
    that is free for all of them (--report results.oldN.csv still finds them)."""
    existing = [name for name in files.run_files(path) if os.path.lexists(name)]
    stem = os.path.splitext(path)[0]

    def aside(name, number):
        return f'{stem}.old{number}{name[len(stem):]}'
    number = 1
    while any(os.path.lexists(aside(name, number)) for name in existing):
        number += 1
    return [(name, aside(name, number)) for name in existing]


def move_aside(path):
    """Rename the run's files as moves_aside says; return the (old, new) names."""
    moves = moves_aside(path)
    for old, new in moves:
        os.rename(old, new)
    return moves


def check_path(path, *, fresh, gzipped=False):
    """ResultsFileError (one line) unless `path` can be a results CSV: a name ending in .csv (with gzipped, a report's
    file, also .csv.gz) in a folder that exists and can be written, where it and the files beside it (and with fresh,
    their names moved aside) can be made."""
    if path.endswith('.csv.gz') and not gzipped:
        raise ResultsFileError(f'{path}: a run writes a plain .csv (gzip it once it is finished: --report reads it so)')
    if not path.endswith(('.csv', '.csv.gz') if gzipped else '.csv') or os.path.basename(path) in (
            '.csv', '.csv.gz') or '\0' in path:
        raise ResultsFileError(f'{path!r} is not a results file name: it must end in .csv, as results.csv does')
    folder = os.path.dirname(path) or '.'
    if not os.path.isdir(folder):  # not normalised: a/missing/../r.csv has no folder
        raise ResultsFileError(f'{path}: its folder {folder} does not exist')
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise ResultsFileError(f'{path}: cannot write in its folder {folder} ({error.strerror})') from None
    if os.path.isdir(path) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ResultsFileError(f'{path} is a folder or cannot be written')
    if os.path.islink(path) and not os.path.exists(path):
        raise ResultsFileError(f'{path} is a symbolic link to nothing')
    for name in [*files.run_files(path), files.lock_path(path)]:
        kind = os.path.isdir if name == files.weights_folder(path) else os.path.isfile
        if os.path.lexists(name) and not kind(name):  # a folder, a FIFO, a link to nothing
            raise ResultsFileError(f'{name} is in the way of the run in {path}: it is not a '
                                   + ('folder' if kind is os.path.isdir else 'file'))
    names = [*files.run_files(path), *map(files.longest_partial_path, files.run_files(path)), files.lock_path(path)]
    names += [new for _, new in moves_aside(path) if fresh]
    longest = max(names, key=lambda name: len(os.fsencode(os.path.basename(name))))
    if len(os.fsencode(os.path.basename(longest))) > os.pathconf(folder, 'PC_NAME_MAX'):
        raise ResultsFileError(f'{path}: the name is too long for the files beside it, such as '
                               f'{os.path.basename(longest)}')


class RunLock:
    """The operating system's lock on results.lock, held while a run reads and writes results.csv: a second run is
    refused at once, and the lock dies with its process, so a killed run leaves nothing that blocks the resume."""

    def __init__(self, path):
        self.path, self.fd, locked = files.lock_path(path), None, False
        try:
            while not locked:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(self.fd, 32).decode(errors='replace').strip()
                    os.close(self.fd)
                    raise ResultsFileError(f'{path} is being written by another run (process {holder or "unknown"}):'
                                           ' wait for it to end, or name another --output') from None
                locked = self.locks_the_file_named()
                if not locked:  # its last holder removed it meanwhile: lock the new one
                    os.close(self.fd)
                    self.fd = None
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f'{os.getpid()}\n'.encode())
        except OSError as error:
            if locked:  # a run refused (a full disk) leaves no lock file behind
                self.release()
            elif self.fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self.fd)
            raise ResultsFileError(f'{self.path} cannot be used as the lock of {path} ({error.strerror})') from None

    def locks_the_file_named(self):
        try:
            named, locked = os.stat(self.path, follow_symlinks=False), os.fstat(self.fd)
        except FileNotFoundError:
            return False
        return (named.st_dev, named.st_ino) == (locked.st_dev, locked.st_ino)

    def release(self):
        """Remove the lock file, then let go (removed while locked, so no run can lock a file being removed). A lock
        file that cannot be removed (its folder made read-only meanwhile) stays: it blocks no later run."""
        if self.locks_the_file_named():  # not a lock another run made after this one's was deleted by hand
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        os.close(self.fd)


class AppendedFile:
    """A file that a run appends to: opened at its first write and cut back to `keep_bytes` then (a line cut by a
    stop dropped), each write whole and synced, or cut back to the size before it."""

    def __init__(self, path, keep_bytes):
        self.path, self.keep_bytes, self.fd = path, keep_bytes, None

    def is_new(self):
        """Whether the file holds nothing to keep (so the next write starts it with its header)."""
        return self.fd is None and self.keep_bytes == 0

    def write(self, data):
        """Write all of `data` at the end of the file and sync it; if that fails, cut the file back to its size
        before, and raise. A stop signal meanwhile takes effect once the data is saved: it may already be read."""
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.ftruncate(self.fd, self.keep_bytes)
        size = os.fstat(self.fd).st_size
        with stopping.deferred():
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view):]
                os.fsync(self.fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, size)
                raise

    def close(self):
        if self.fd is not None:
            os.close(self.fd)


class ResultsFile:
    """A results CSV opened for a run: the rows an earlier run of the same configuration recorded, answered by
    recorded_scores, and new rows appended whole and synced to disk by append, which then calls on_append(rows)
    (set by the caller, for progress); with curves, each trained row's curve is appended to the curves file just
    before. Nothing is written before the first append: a run that stops before it leaves the files as they were."""

    def __init__(self, path, configuration, recorded, keep_bytes, curves_keep_bytes, settings, device, lock):
        self.path, self.configuration, self.settings, self.device, self.lock = (path, configuration, settings, device,
                                                                                lock)
        self.machine = machine()
        self.recorded = recorded
        self.csv, self.curves = AppendedFile(path, keep_bytes), AppendedFile(files.curves_path(path), curves_keep_bytes)
        self.on_append = None
        self.configuration_saved = False  # with this device and machine

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.csv.close()
        self.curves.close()
        self.lock.release()

    def recorded_scores(self, row):
        """The scores recorded for row's evaluation, or None if it has none; ResumeMismatchError if the file
        recorded another point for it."""
        recorded = self.recorded.get((row['method'], row['repetition'], row['iteration']))
        if recorded is None:
            return None

        def point(evaluation):
            return (f'learning rate {evaluation["learning_rate"]!r}, weight decay {evaluation["weight_decay"]!r}'
                    + (f' (a repeat of iteration {evaluation["repeat_of"]})' if evaluation['repeat_of'] else '')
                    + (f' (configuration {evaluation["configuration"]} at {evaluation["epochs"]} epochs)'
                       if evaluation['configuration'] else ''))
        if any(recorded[name] != row[name] for name in ('learning_rate', 'weight_decay', 'repeat_of', 'bracket',
                                                        'configuration', 'epochs')):
            raise ResumeMismatchError(
                f'{self.path} records {row["method"]} repetition {row["repetition"]} iteration {row["iteration"]} '
                f'at {point(recorded)}, but the search now asks for {point(row)}: '
                f'{self.why_points_differ(recorded, row)}'
                '; --fresh starts over')
        return {name: recorded[name] for name in SCORE_COLUMNS}

    def holds(self, row):
        """Whether the file records row's evaluation with row's point and scores (a diverged network's NaN as NaN)."""
        recorded = self.recorded.get((row['method'], row['repetition'], row['iteration']))
        return recorded is not None and all(
            recorded[name] == row[name] or (recorded[name] != recorded[name] and row[name] != row[name])
            for name in ('repeat_of', *PLANNED_COLUMNS, *SCORE_COLUMNS))

    def why_points_differ(self, recorded, asked):
        """Why a resumed search asks for another point than the file records: only in the last digits (another
        machine's arithmetic), or outright."""
        bounds = {'learning_rate': self.settings.learning_rate_bounds,
                  'weight_decay': self.settings.weight_decay_bounds}
        if (all(recorded[name] == asked[name] for name in ('bracket', 'configuration', 'epochs'))
                and all(abs(recorded[name] - asked[name]) <= LAST_DIGITS * (high - low)
                        for name, (low, high) in bounds.items())):
            machines = self.configuration.get('machines', [])
            if self.machine in machines:
                return (f'the two differ only in their last digits, as when another CPU, BLAS core or thread count '
                        f'computes the model fits, though the file records this machine among its machines '
                        f'({" and ".join(machines)})')
            return (f'the two differ only in their last digits, as when another CPU or BLAS core computes the model '
                    f'fits: the file was written on {" and ".join(machines) or "a machine it does not record"}, '
                    f'this is {self.machine} (resume it there)')
        return 'the two differ outright: the file comes from another version of the code or a library, or was edited'

    def rows_saved(self):
        """How many whole rows the file holds now (read from disk: an interrupted append may have written them)."""
        try:
            with open(self.path, 'rb') as file:
                return max(file.read().count(b'\n') - 1, 0)
        except FileNotFoundError:
            return 0

    def append(self, rows):
        """Append whole rows (and before them their curves) and sync them to disk. files.WriteError if that fails (a
        full disk, a lost permission): the file is then as it was before (curves written for rows that were not are
        dropped on resume), and if the first append of a new run fails, the files it created are removed."""
        if not rows:
            return
        text, columns = io.StringIO(), COLUMNS_OF_FORMAT[self.configuration['results_format']]
        if self.csv.is_new():
            text.write(','.join(columns) + '\n')
        csv.DictWriter(text, columns, lineterminator='\n', extrasaction='ignore').writerows(rows)
        curves = curve_lines(rows, header=self.curves.is_new())
        created = [name for name in (files.configuration_path(self.path), self.curves.path, self.path)
                   if not os.path.exists(name)]
        writing = self.csv
        try:
            self._save_configuration()
            for writing, data in ((self.curves, curves), (self.csv, text.getvalue())):
                if data:
                    writing.write(data.encode())
        except (OSError, files.WriteError) as error:
            for name in created:  # nothing of this run is recorded: leave no file of it
                with contextlib.suppress(OSError):
                    os.unlink(name)
            if isinstance(error, files.WriteError):  # the configuration's
                raise
            raise files.WriteError(writing.path, error) from error
        if self.on_append:
            self.on_append(rows)

    def _save_configuration(self):
        """Save the configuration with this device and machine in its lists (every device that has trained rows of
        the file, every machine whose searches proposed them), once."""
        if self.configuration_saved:
            return
        configuration = {**self.configuration}
        for name, value in (('devices', self.device), ('machines', self.machine)):
            if value not in configuration.get(name, []):
                configuration[name] = [*configuration.get(name, []), value]
        saved_path = files.configuration_path(self.path)
        if not os.path.exists(saved_path) or configuration != read_configuration(saved_path):
            files.write_whole(saved_path, lambda file: file.write(json.dumps(configuration, indent=1) + '\n'))
            self.configuration = configuration
        self.configuration_saved = True


def open_results(path, settings, fixed, device, *, fresh=False):
    """The ResultsFile of a run of these Settings (and fixed values: see configuration), locked for this run and
    checked before anything is trained or written (check_path; an existing file must come from the same
    configuration). fresh: the file is not read, and the caller moves it aside (move_aside) before the first append,
    which would overwrite it. ResultsFileError (one line) otherwise."""
    check_path(path, fresh=fresh)
    current = configuration(settings, fixed)
    lock = RunLock(path)
    try:
        return ResultsFile(path, *recorded_run(path, current, fresh=fresh), settings, device, lock)
    except BaseException:
        lock.release()
        raise


def saved_settings(path):
    """(configuration, Settings, results format) saved beside results file `path`, read and checked as the flags are
    (5.0 is no --evaluations); ValueError (one line) if they cannot be, or this code does not read the format."""
    saved = read_configuration(files.configuration_path(path))
    found = saved.get('results_format', 1)
    if type(found) is not int or found not in COLUMNS_OF_FORMAT:  # not 2.0, '2' or True
        raise ResultsFileError(f'{path} is in results format {found!r}, this code reads formats 2 and 3 (in which '
                               "bayesian rows come from the authors' Gaussian process and repeated points have a "
                               'repeat_of column): it can be neither resumed nor reported (--fresh moves it aside)')
    return saved, run_settings.Settings.from_saved(saved, path), found


def recorded_run(path, current, *, fresh):
    """(configuration, recorded rows, bytes to keep of the CSV and of its curves file) of the run in `path`, resumed
    with the `current` configuration (a new file: nothing recorded)."""
    config_path = files.configuration_path(path)
    if fresh or not os.path.exists(config_path):
        if not fresh and os.path.exists(path) and os.path.getsize(path) > 0:
            raise ResultsFileError(f'{path} exists without its configuration {config_path}, so it cannot be resumed '
                                   'safely: name another file, or --fresh moves it aside')
        return current, {}, 0, 0
    try:
        saved, settings, results_format = saved_settings(path)
    except ValueError as error:
        raise ResultsFileError(f'{error}; --fresh moves it and {path} aside') from None
    current = {**current, 'results_format': results_format}  # a format-2 file resumes in format 2
    if current['repetitions'] > settings.repetitions:  # more repetitions extend the run: each is seeded on its own
        saved, settings = ({**saved, 'repetitions': current['repetitions']},
                           dataclasses.replace(settings, repetitions=current['repetitions']))
    differences = configuration_differences({**saved, **settings.saved()}, current)
    if differences:
        raise ResultsFileError(f'{path} was made with another configuration ({"; ".join(differences)}): rerun with '
                               'the same settings to resume it, or --fresh moves it aside and starts over')
    if not os.path.exists(path):
        return saved, {}, 0, 0
    try:
        recorded, keep = read(path, settings, results_format)
        curves_keep = 0
        if saved.get('curves') and os.path.exists(files.curves_path(path)):
            curves_keep = read_curves(files.curves_path(path), recorded)[1]
        elif saved.get('curves') and any(row['repeat_of'] is None for row in recorded.values()):
            raise ValueError(f'{files.curves_path(path)} is missing: the curves of the rows {path} records')
    except OSError as error:
        raise ResultsFileError(f'{error.filename or path} cannot be read ({error.strerror})') from None
    except ValueError as error:
        raise ResultsFileError(f'{error}; the file is left as it is (fix it, or --fresh moves it aside)') from None
    return saved, recorded, keep, curves_keep  # saved: with the devices that trained its rows


def load_run(path):
    """The Run in results file `path`, finished or not: its settings read from its configuration as the flags are,
    its rows checked as a resume checks them, nothing written; ValueError (one line) if it cannot be read so."""
    saved, settings, results_format = saved_settings(path)
    try:
        return Run(path, settings, saved, read(path, settings, results_format)[0])
    except (OSError, EOFError) as error:  # EOFError: a gzipped file cut short
        raise ResultsFileError(f'{path} cannot be read ({getattr(error, "strerror", None) or error})') from None
