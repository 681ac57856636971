"""Shared helpers: the project on sys.path, running its scripts, the small runs the tests make (small_run, and
finished_run, which makes each once), reading their results files, pretend training, and small datasets written in
the real on-disk formats.

The slowest tests (pytest --durations=15, one process, seconds here on 2 CPU cores, nothing else running): the Ray
driver stopped and resumed with a worker killed (39), a proposing worker killed (29), the 7-method unchanged-numbers
command at population 1 (22), an Optuna run killed mid-search (18), every method on a table at 3 proposing processes
(18), a run killed anywhere at population 3 and 1 (17, 15), the progress bar on a terminal (16), the paper's Table II
replayed (15). Plots are drawn only in the tests marked `drawn` (figures_not_drawn)."""
import contextlib
import csv
import gzip
import hashlib
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The suite runs on two processes (pytest -n 2, README): torch's OpenMP threads then sleep while they wait instead of
# spinning, or two processes' threads take each other's cores (the numbers are the same either way)
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import numpy as np  # noqa: E402 (torch, under torchvision, reads the policy as it loads)
import pytest  # noqa: E402
import torchvision  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # before the standard library's own `test` package
# The key that signs the searches' saved states (search_states.py): the tests' own, not the user's
os.environ['XDG_CONFIG_HOME'] = tempfile.mkdtemp(prefix='tests-config-')
MNIST_T10K = ROOT.parent / 'shared' / 'data' / 'mnist-t10k'
FASHION_MNIST = ROOT.parent / 'shared' / 'data' / 'fashion-mnist'  # the whole of it, as Debian's package has it


# The settings of the small runs the tests make: each test file changes what it needs (small_run)
SMALL_RUN = {'dataset': 'digits', 'device': 'cpu', 'epochs': 1, 'evaluations': 4, 'init_points': 2, 'repetitions': 2,
             'method': 'both'}


def small_run(**changes):
    """test.py's flags for a small run on digits: SMALL_RUN with these changes (True: a switch; a tuple: a flag of
    several values; None: the flag left out, its default then)."""
    flags = []
    for name, value in {**SMALL_RUN, **changes}.items():
        flag = '--' + name.replace('_', '-')
        if value is True:
            flags.append(flag)
        elif value is not None:
            flags += [flag, *map(str, value if isinstance(value, tuple) else [value])]
    return flags


@pytest.fixture(scope='session')
def finished_run(tmp_path_factory):
    """finished_run(flags): the results CSV of a finished run of test.py with these flags, made once per set of flags
    in the session (copy it before changing it); with script=True run as a user runs it, in a process of its own:
    (the CSV, what it printed)."""
    made = {}

    def run(flags, *, script=False):
        key = (tuple(flags), script)
        if key not in made:
            output = tmp_path_factory.mktemp('run') / 'results.csv'
            if script:
                result = run_script('test.py', *flags, '--output', output.name, cwd=output.parent)
                assert result.returncode == 0, result.stderr
                made[key] = output, result.stdout
            else:
                import test as experiment
                experiment.main([*flags, '--output', str(output)])
                made[key] = output
        return made[key]
    return run


def run_script(script, *args, cwd):
    """Run one of the project's scripts as a user would; return the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def refused(main, arguments, capsys):
    """Run a script's main expecting a one-line error and exit status 2; return that line."""
    with pytest.raises(SystemExit) as exit:
        main(arguments)
    stderr = capsys.readouterr().err
    assert exit.value.code == 2 and stderr.count('\n') == 1 and ': error: ' in stderr, stderr
    return stderr


def read_rows(path):
    """A results CSV's rows as dicts of strings."""
    with open(path, newline='') as file:
        return list(csv.DictReader(file))


def typed_rows(path):
    """A results CSV's rows with numbers as numbers, and None where a row has no repeat_of, bracket or
    configuration."""
    def typed(name, value):
        if name == 'method':
            return value
        if name in ('repeat_of', 'bracket', 'configuration'):
            return int(value) if value else None
        return int(value) if name in ('repetition', 'iteration', 'seed', 'epochs') else float(value)
    return [{name: typed(name, value) for name, value in row.items()} for row in read_rows(path)]


def without_seconds(rows):
    """The rows without the wall-time column, the one thing a rerun changes."""
    return [{name: value for name, value in row.items() if name != 'seconds'} for row in rows]


def sorted_rows(path):
    """A results CSV's rows by method, repetition and iteration (populations write them in other orders)."""
    return sorted(read_rows(path), key=lambda row: (row['method'], int(row['repetition']), int(row['iteration'])))


def snapshot(folder):
    """Every path under `folder` with its bytes (a folder: None; a symbolic link: where it points; a FIFO: 'fifo')."""
    def content(path):
        if path.is_symlink():
            return os.readlink(path)
        return None if path.is_dir() else path.read_bytes() if path.is_file() else 'fifo'
    return {path: content(path) for path in Path(folder).rglob('*')}


@contextlib.contextmanager
def folder_without_permissions():
    """A new folder this process may neither write nor read. Root ignores permission bits, so a root process
    takes the nobody user's identity (its effective user id) until the block ends."""
    folder = tempfile.mkdtemp()
    os.chmod(folder, 0o111)  # traversable, not readable, not writable
    was_root = os.geteuid() == 0
    try:
        if was_root:
            os.seteuid(65534)
        yield folder
    finally:
        if was_root:
            os.seteuid(0)
        os.chmod(folder, 0o700)
        shutil.rmtree(folder)


def write_idx(path, array):
    """Write a uint8 array in MNIST's IDX format (big-endian magic number and sizes, then the bytes)."""
    with open(path, 'wb') as file:
        file.write(struct.pack('>BBBB', 0, 0, 0x08, array.ndim))
        file.write(struct.pack(f'>{array.ndim}I', *array.shape))
        file.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(root, train_images, train_labels, test_images, test_labels):
    """An MNIST folder as torchvision expects it: root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""
    raw = Path(root) / 'MNIST' / 'raw'
    raw.mkdir(parents=True)
    write_idx(raw / 'train-images-idx3-ubyte', train_images)
    write_idx(raw / 'train-labels-idx1-ubyte', train_labels)
    write_idx(raw / 't10k-images-idx3-ubyte', test_images)
    write_idx(raw / 't10k-labels-idx1-ubyte', test_labels)


def pretend_scores(learning_rate, weight_decay, seed):
    """Scores that depend on the point and the seed only, exactly, as training would on one machine."""
    loss = 0.5 + (learning_rate - 0.03) ** 2 * 100 + weight_decay * 50 + seed % 1000 * 1e-5
    return dict(val_loss=loss, val_accuracy=1 / (1 + loss), test_loss=loss, test_accuracy=1 / (1 + loss), seconds=1.0)


def pretend_population(splits, *, seeds, learning_rates, weight_decays, **_):
    """network.train_and_evaluate_population with pretend_scores for the networks' scores."""
    return [pretend_scores(*point) for point in zip(learning_rates, weight_decays, seeds)]


def rows_in(path):
    """The whole rows a results CSV holds now (0 if there is none)."""
    return max(path.read_bytes().count(b'\n') - 1, 0) if path.exists() else 0


def start_and_stop(output, rows, stop_signal, arguments):
    """Run test.py with `arguments` until it has written a row and `output` holds at least `rows` rows, then send
    `stop_signal`; return its stderr."""
    rows = max(rows, rows_in(output) + 1)
    process = subprocess.Popen([sys.executable, str(ROOT / 'test.py'), *arguments,
                                '--output', output.name], cwd=output.parent, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    while process.poll() is None and rows_in(output) < rows:
        time.sleep(0.005)
    assert process.poll() is None, 'the run ended before it could be stopped'
    process.send_signal(stop_signal)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == (-signal.SIGKILL if stop_signal == signal.SIGKILL else 128 + stop_signal), stderr
    return stderr


class FakeResultsFile:
    """What the searches need of a results.ResultsFile: the run's settings (of its parsed flags) and configuration, the
    scores a file records, by iteration, and the rows appended."""

    def __init__(self, args, recorded=None):
        import run_settings
        self.settings = run_settings.Settings.of(args)
        self.configuration = self.settings.saved()
        self.recorded, self.appended = recorded or {}, []

    def recorded_scores(self, row):
        return self.recorded.get(row['iteration'])

    def holds(self, row):
        return row['iteration'] in self.recorded

    def append(self, rows):
        self.appended += rows


def pytest_configure(config):
    config.addinivalue_line('markers', 'drawn: the test looks at the plots a run writes, so they are drawn for real')


@pytest.fixture(autouse=True)
def figures_not_drawn(request, monkeypatch):
    """A run in the test's process writes each plot as a few bytes instead of drawing it (drawing is a third of a
    small run's time); tests marked `drawn` draw them. The plots are written whole as ever (files.write_whole)."""
    if 'drawn' not in request.keywords:
        import files
        import report
        monkeypatch.setattr(report, 'save_figure', lambda figure, path: files.write_whole(
            path, lambda file: file.write(b'a plot not drawn by this test'), binary=True))


@pytest.fixture(autouse=True)
def proposals_here(monkeypatch):
    """The searches propose in the test's process unless a test asks for workers (--proposal-processes N, or
    proposals.HANDOFF_SECONDS set): a slow round on a loaded machine would otherwise hand them to workers, where
    what a test patched or counts in its process does not reach."""
    import proposals
    monkeypatch.setattr(proposals, 'HANDOFF_SECONDS', float('inf'))


@pytest.fixture
def stop_handlers(monkeypatch):
    """The scripts' stop handlers (stopping.raise_when_stopped) for the test, the process's own restored after it."""
    import stopping
    monkeypatch.setattr(stopping, 'received', None)
    with stopping.handlers_kept():
        stopping.raise_when_stopped()
        yield


@pytest.fixture
def pretend_training(monkeypatch):
    """Training, alone or in populations, replaced by pretend_scores; the list of the (learning_rate, weight_decay,
    seed) of every network trained from then on."""
    import network
    trained = []

    def train_population(splits, *, seeds, learning_rates, weight_decays, **_):
        trained.extend(zip(learning_rates, weight_decays, seeds))
        return pretend_population(splits, seeds=seeds, learning_rates=learning_rates, weight_decays=weight_decays)
    monkeypatch.setattr(network, 'train_and_evaluate_population', train_population)
    monkeypatch.setattr(network, 'train_and_evaluate', lambda splits, *, seed, learning_rate, weight_decay, **_:
                        train_population(splits, seeds=[seed], learning_rates=[learning_rate],
                                         weight_decays=[weight_decay])[0])
    return trained


@pytest.fixture
def count_trained(monkeypatch):
    """The rows of every network test.py trains from now on (its training itself unchanged)."""
    import local_training
    trained = []
    train_networks = local_training.train_networks
    monkeypatch.setattr(local_training, 'train_networks',
                        lambda rows, *rest, **options: trained.extend(rows) or train_networks(rows, *rest, **options))
    return trained


@pytest.fixture
def mnist_dir(tmp_path):
    """A tiny MNIST (30 training, 10 test images of random pixels) and its arrays."""
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 10, 30),
              rng.integers(0, 256, (10, 28, 28)), rng.integers(0, 10, 10))
    write_mnist(tmp_path, *arrays)
    return tmp_path, arrays


def write_cifar10(root, monkeypatch, *, batch_size, test_size):
    """A CIFAR-10 folder of random pixels as torchvision expects it (5 pickled training batches of `batch_size`
    images, a test batch of `test_size`); return {batch name: (images, labels)}.

    torchvision checks each file's MD5 against the official one; the files' own sums replace those.
    """
    rng = np.random.default_rng(0)
    folder = Path(root) / 'cifar-10-batches-py'
    folder.mkdir()
    batches = {f'data_batch_{i}': batch_size for i in range(1, 6)} | {'test_batch': test_size}
    arrays, sums = {}, {}
    for name, size in batches.items():
        images, labels = rng.integers(0, 256, (size, 3072), dtype=np.uint8), rng.integers(0, 10, size).tolist()
        (folder / name).write_bytes(pickle.dumps({'data': images, 'labels': labels}))
        arrays[name] = images, labels
    (folder / 'batches.meta').write_bytes(pickle.dumps({'label_names': [str(i) for i in range(10)]}))
    for name in [*batches, 'batches.meta']:
        sums[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, 'train_list', [[f'data_batch_{i}', sums[f'data_batch_{i}']] for i in range(1, 6)])
    monkeypatch.setattr(cifar, 'test_list', [['test_batch', sums['test_batch']]])
    monkeypatch.setattr(cifar, 'meta', {**cifar.meta, 'md5': sums['batches.meta']})
    return arrays


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    """A tiny CIFAR-10 (5 pickled batches of 4 images, a test batch of 6) and its arrays."""
    return tmp_path, write_cifar10(tmp_path, monkeypatch, batch_size=4, test_size=6)


@pytest.fixture
def no_downloads(monkeypatch, tmp_path_factory):
    """Point torchvision's download addresses at a closed local port, so a missing dataset fails fast, and Debian's
    Fashion-MNIST folder at an empty one."""
    import dataset_management
    monkeypatch.setattr(dataset_management, 'DEBIAN_FASHION_MNIST', str(tmp_path_factory.mktemp('no-debian-package')))
    monkeypatch.setattr(torchvision.datasets.MNIST, 'mirrors', ['http://127.0.0.1:9/'])
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, 'mirrors', ['http://127.0.0.1:9/'])
    monkeypatch.setattr(torchvision.datasets.CIFAR10, 'url', 'http://127.0.0.1:9/cifar-10-python.tar.gz')


# A small benchmark table: a 3 x 3 grid on 300 digits with a learning rate up to 1, where some networks diverge
TABLE_SETTINGS = small_run(training_size=300, epochs=3, learning_rate_bounds=(0.001, 1), evaluations=None,
                           init_points=None, repetitions=None, method=None)


@pytest.fixture(scope='session')
def digits_table(finished_run):
    """A finished grid run with curves (2 replicas of TABLE_SETTINGS's 3 x 3 grid): its results CSV's path."""
    return finished_run([*TABLE_SETTINGS, '--method', 'grid', '--evaluations', '9', '--repetitions', '2', '--curves',
                         '--quiet'])


@pytest.fixture(scope='session')
def fashion_mnist_dir(tmp_path_factory):
    """A data folder holding the real Fashion-MNIST's four .gz files where test.py looks first: FashionMNIST/raw/."""
    if not FASHION_MNIST.is_dir():
        pytest.skip(f'the real Fashion-MNIST is not at {FASHION_MNIST} (only the shared development data has it)')
    root = tmp_path_factory.mktemp('fashion-mnist')
    (root / 'FashionMNIST' / 'raw').mkdir(parents=True)
    for path in FASHION_MNIST.glob('*.gz'):
        (root / 'FashionMNIST' / 'raw' / path.name).symlink_to(path)
    return root


@pytest.fixture(scope='session')
def mnist_t10k_dir(tmp_path_factory):
    """The real MNIST test images as an MNIST folder whose training set is those 10,000 images."""
    if not MNIST_T10K.is_dir():
        pytest.skip(f'the real MNIST test set is not at {MNIST_T10K} (only the shared development data has it)')
    images = np.frombuffer(gzip.decompress((MNIST_T10K / 't10k-images-idx3-ubyte.gz').read_bytes()),
                           np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.decompress((MNIST_T10K / 't10k-labels-idx1-ubyte.gz').read_bytes()),
                           np.uint8, offset=8)
    root = tmp_path_factory.mktemp('mnist-t10k')
    write_mnist(root, images, labels, images[:1000], labels[:1000])
    return root


# The results file's tests (test_results_*.py): a run of 16 evaluations, never stopped, at each population size

def config_path(output):
    """The configuration JSON beside a results CSV, as a Path."""
    import files
    return Path(files.configuration_path(str(output)))


def same_rows(first, second):
    """Whether two results files hold the same rows, in the same order, but for their wall times."""
    return without_seconds(read_rows(first)) == without_seconds(read_rows(second))


def population_flags(population):
    """The flags of a population size, or of 'rounds': populations of 3 with --schedule rounds."""
    return ['--population', '3', '--schedule', 'rounds'] if population == 'rounds' else ['--population',
                                                                                        str(population)]


@pytest.fixture(scope='session')
def uninterrupted(finished_run):
    """{population: results file} of small_run() never stopped (10: the CPU default)."""
    return {population: finished_run([*small_run(), *population_flags(population)])
            for population in (1, 3, 10, 'rounds')}


def copy_of_finished_run(uninterrupted, folder):
    """A copy of the finished population-3 run in `folder`: (its CSV, its configuration JSON)."""
    output = folder / 'results.csv'
    shutil.copy(uninterrupted[3], output)
    shutil.copy(config_path(uninterrupted[3]), config_path(output))
    return output, config_path(output)
