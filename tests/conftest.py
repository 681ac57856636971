"""Shared helpers: the project on sys.path, and small datasets written in the real on-disk formats."""
import gzip
import hashlib
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # before the standard library's own `test` package
MNIST_T10K = ROOT.parent / 'shared' / 'data' / 'mnist-t10k'


def run_script(script, *args, cwd):
    """Run one of the project's scripts as a user would; return the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


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


@pytest.fixture
def pretend_training(monkeypatch):
    """Training, alone or in populations, replaced by pretend_scores; the list of the (learning_rate, weight_decay,
    seed) of every network trained from then on."""
    import network
    trained = []

    def train_population(splits, *, seeds, learning_rates, weight_decays, **_):
        trained.extend(zip(learning_rates, weight_decays, seeds))
        return [pretend_scores(*point) for point in zip(learning_rates, weight_decays, seeds)]
    monkeypatch.setattr(network, 'train_and_evaluate_population', train_population)
    monkeypatch.setattr(network, 'train_and_evaluate', lambda splits, *, seed, learning_rate, weight_decay, **_:
                        train_population(splits, seeds=[seed], learning_rates=[learning_rate],
                                         weight_decays=[weight_decay])[0])
    return trained


@pytest.fixture
def mnist_dir(tmp_path):
    """A tiny MNIST (30 training, 10 test images of random pixels) and its arrays."""
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 10, 30),
              rng.integers(0, 256, (10, 28, 28)), rng.integers(0, 10, 10))
    write_mnist(tmp_path, *arrays)
    return tmp_path, arrays


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    """A tiny CIFAR-10 (5 pickled batches of 4 images, a test batch of 6) and its arrays.

    torchvision checks each file's MD5 against the official one; the fixture's own sums replace those.
    """
    rng = np.random.default_rng(0)
    folder = tmp_path / 'cifar-10-batches-py'
    folder.mkdir()
    batches = {f'data_batch_{i}': 4 for i in range(1, 6)} | {'test_batch': 6}
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
    return tmp_path, arrays


@pytest.fixture
def no_downloads(monkeypatch):
    """Point torchvision's download addresses at a closed local port, so a missing dataset fails fast."""
    monkeypatch.setattr(torchvision.datasets.MNIST, 'mirrors', ['http://127.0.0.1:9/'])
    monkeypatch.setattr(torchvision.datasets.CIFAR10, 'url', 'http://127.0.0.1:9/cifar-10-python.tar.gz')


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
