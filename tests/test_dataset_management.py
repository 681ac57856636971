"""The data: real torchvision loading of MNIST / CIFAR-10 files, Fashion-MNIST from its three places, digits, splits,
the datasets as records, and a missing, unreadable or inconsistent dataset."""
import functools
import gzip
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import FASHION_MNIST, ROOT, refused, write_idx, write_mnist
from torchvision.transforms import ToTensor

import dataset_management
import network
import test as experiment


def test_mnist_files_load_through_torchvision_as_totensor_gives(mnist_dir):
    root, (train_images, train_labels, _, test_labels) = mnist_dir
    splits = dataset_management.load_splits('mnist', str(root), validation_size=10)
    assert [tuple(split.images.shape) for split in splits] == [(20, 1, 28, 28), (10, 1, 28, 28), (10, 1, 28, 28)]
    assert all(split.images.dtype == torch.float32 and split.labels.dtype == torch.int64 for split in splits)
    # validation is the last 10 images of the training set, test the official test set
    assert torch.equal(splits.validation.images[:, 0], torch.tensor(train_images[20:] / 255, dtype=torch.float32))
    assert splits.validation.labels.tolist() == train_labels[20:].tolist()
    assert splits.train.labels.tolist() == train_labels[:20].tolist()
    assert splits.test.labels.tolist() == test_labels.tolist()
    official = torchvision.datasets.MNIST(str(root), train=True)
    for index in (0, 19):
        assert torch.equal(splits.train.images[index], ToTensor()(official[index][0]))
    assert torch.equal(splits.test.images[3], ToTensor()(torchvision.datasets.MNIST(str(root), train=False)[3][0]))


def test_cifar10_batches_load_through_torchvision_as_totensor_gives(cifar_dir):
    root, arrays = cifar_dir
    splits = dataset_management.load_splits('cifar10', str(root), validation_size=8)
    assert [tuple(split.images.shape) for split in splits] == [(12, 3, 32, 32), (8, 3, 32, 32), (6, 3, 32, 32)]
    training_labels = [label for i in range(1, 6) for label in arrays[f'data_batch_{i}'][1]]
    assert splits.train.labels.tolist() + splits.validation.labels.tolist() == training_labels
    assert splits.test.labels.tolist() == arrays['test_batch'][1]
    official = torchvision.datasets.CIFAR10(str(root), train=True)
    for index, split, position in ((0, splits.train, 0), (11, splits.train, 11), (19, splits.validation, 7)):
        assert torch.equal(split.images[position], ToTensor()(official[index][0]))
    first = arrays['data_batch_1'][0][0].reshape(3, 32, 32) / 255  # CIFAR stores planes: red, green, blue
    assert torch.equal(splits.train.images[0], torch.tensor(first, dtype=torch.float32))


def test_digits_are_28x28_in_the_unit_interval_with_a_held_out_test_set():
    from sklearn.datasets import load_digits
    splits = dataset_management.load_splits('digits')
    assert [len(split.images) for split in splits] == [1077, 360, 360]
    assert all(tuple(split.images.shape[1:]) == (1, 28, 28) for split in splits)
    images = torch.cat([split.images for split in splits])
    assert images.min() == 0 and images.max() == 1
    digits = load_digits()
    assert torch.cat([split.labels for split in splits]).tolist() == digits.target.tolist()
    # each 28x28 image is its 8x8 original, scaled from 0..16 to [0, 1]: averaging back recovers its layout
    coarse = torch.nn.functional.adaptive_avg_pool2d(splits.train.images[:50], 8)[:, 0].numpy()
    original = digits.images[:50] / 16
    assert np.corrcoef(coarse.ravel(), original.ravel())[0, 1] > 0.95


def test_validation_size_must_leave_training_images():
    with pytest.raises(ValueError, match=r'--validation-size 1437 .* between 1 and 1436'):
        dataset_management.load_splits('digits', validation_size=1437)
    with pytest.raises(ValueError, match=r'--validation-size 0 '):
        dataset_management.load_splits('digits', validation_size=0)


@pytest.mark.parametrize('dataset, expected', [
    ('mnist', 'train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte'),
    ('cifar10', 'cifar-10-python.tar.gz, or its folder cifar-10-batches-py/'),
])
def test_a_missing_dataset_names_the_files_and_where_they_go(tmp_path, no_downloads, dataset, expected):
    with pytest.raises(dataset_management.DatasetNotFoundError) as error:
        dataset_management.load_splits(dataset, str(tmp_path / 'data'))
    message = str(error.value)
    assert '\n' not in message and expected in message and str(tmp_path / 'data') in message
    assert 'could not be downloaded' in message
    assert not (tmp_path / 'data').exists()  # the folders the failed download made are gone


def test_a_data_folder_missing_with_its_parents_is_not_made(tmp_path, no_downloads):
    with pytest.raises(dataset_management.DatasetNotFoundError):
        dataset_management.load_splits('mnist', str(tmp_path / 'nonexistent' / 'data'))
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_dataset_folder_is_named_as_unreadable(no_downloads):
    folder = tempfile.mkdtemp()
    raw = Path(folder) / 'MNIST' / 'raw'
    raw.mkdir(parents=True)
    os.chmod(folder, 0o755)
    raw.chmod(0o111)  # traversable, not readable: torchvision would take it for empty and try to download
    was_root = os.geteuid() == 0
    try:
        if was_root:  # root reads anything: the nobody user's identity
            os.seteuid(65534)
        with pytest.raises(dataset_management.DatasetError) as error:
            dataset_management.load_splits('mnist', folder)
    finally:
        if was_root:
            os.seteuid(0)
        raw.chmod(0o700)
        shutil.rmtree(folder)
    assert str(error.value) == f'{raw} cannot be read (Permission denied), so mnist cannot be loaded from it'


@pytest.mark.parametrize('change, named', [
    (lambda arrays: (arrays[0], arrays[1][:-1], *arrays[2:]), "mnist's training set in {raw} has 30 images but 29 "
                                                              'labels: its files do not belong together'),
    (lambda arrays: (*arrays[:3], np.where(np.arange(10) == 4, 200, arrays[3])),
     "mnist's test set in {raw} has a label 200: the classes are 0 to 9"),
    (lambda arrays: (arrays[0][:, :27, :27], *arrays[1:]), "mnist's training set in {raw} holds images of 1 x 27 x 27, "
                                                           'not 1 x 28 x 28'),
])
def test_dataset_files_that_do_not_belong_together_are_refused_when_loaded(change, named, tmp_path):
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 10, 30), rng.integers(0, 256, (10, 28, 28)),
              rng.integers(0, 10, 10))
    write_mnist(tmp_path, *change(arrays))
    with pytest.raises(dataset_management.DatasetError) as error:
        dataset_management.load_splits('mnist', str(tmp_path), validation_size=5)
    assert str(error.value) == named.format(raw=tmp_path / 'MNIST' / 'raw')


def test_to_device_keeps_the_values_and_lays_images_out_channels_last_on_cpu_only():
    images = torch.rand(4, 3, 32, 32)
    moved = dataset_management.to_device(dataset_management.Split(images, torch.arange(4)), 'cpu')
    assert not images.is_contiguous(memory_format=torch.channels_last)
    assert moved.images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(moved.images, images) and moved.labels.tolist() == [0, 1, 2, 3]
    assert dataset_management.memory_format('cuda:0') == torch.contiguous_format


def test_the_digits_load_without_importing_torchvision():
    """torchvision's import takes seconds; only CIFAR-10 and MNIST need it (their tests above load it)."""
    loaded = subprocess.run([sys.executable, '-c', 'import sys, test, dataset_management; '
                             'splits = dataset_management.load_splits("digits", "data", validation_size=360); '
                             'print(len(splits.train.images), "torchvision" in sys.modules)'],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert loaded.stdout == '1077 False\n', loaded.stderr


# Fashion-MNIST: its folder, Debian's package's, torchvision's download; the IDX files uncompressed or gzipped

def small_idx_arrays(seed=0, training=30, test=10):
    """Random (training images, labels, test images, labels) in MNIST's shapes, as uint8 arrays."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (training, 28, 28), dtype=np.uint8), rng.integers(0, 10, training, dtype=np.uint8),
            rng.integers(0, 256, (test, 28, 28), dtype=np.uint8), rng.integers(0, 10, test, dtype=np.uint8))


def write_idx_folder(folder, arrays, *, gzipped):
    """The four IDX files of `arrays` in `folder`, uncompressed or as .gz."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(dataset_management.IDX_FILES, arrays):
        write_idx(folder / name, array)
        if gzipped:
            (folder / f'{name}.gz').write_bytes(gzip.compress((folder / name).read_bytes()))
            (folder / name).unlink()


def assert_splits_hold(splits, arrays, validation_size):
    """The splits are the arrays' images as ToTensor gives them, validation the last of the training set."""
    images, labels, test_images, test_labels = (torch.as_tensor(array) for array in arrays)
    cut = len(images) - validation_size
    for split, (expected_images, expected_labels) in zip(
            splits, [(images[:cut], labels[:cut]), (images[cut:], labels[cut:]), (test_images, test_labels)]):
        assert torch.equal(split.images, expected_images.unsqueeze(1).float() / 255)
        assert split.labels.tolist() == expected_labels.tolist() and split.labels.dtype == torch.int64


@pytest.mark.parametrize('gzipped', [False, True], ids=['uncompressed', 'gzipped'])
def test_fashion_mnist_is_read_from_its_folder_as_it_is(gzipped, tmp_path, no_downloads):
    arrays = small_idx_arrays()
    write_idx_folder(tmp_path / 'FashionMNIST' / 'raw', arrays, gzipped=gzipped)
    assert_splits_hold(dataset_management.load_splits('fashion-mnist', str(tmp_path), validation_size=10), arrays, 10)


def test_fashion_mnist_is_read_from_debians_folder_when_the_data_folder_has_none(tmp_path, monkeypatch):
    arrays = small_idx_arrays(seed=1)
    write_idx_folder(tmp_path / 'debian', arrays, gzipped=True)
    monkeypatch.setattr(dataset_management, 'DEBIAN_FASHION_MNIST', str(tmp_path / 'debian'))
    splits = dataset_management.load_splits('fashion-mnist', str(tmp_path / 'data'), validation_size=5)
    assert_splits_hold(splits, arrays, 5)
    assert not (tmp_path / 'data').exists()  # nothing made in the data folder


@pytest.fixture
def fashion_mnist_server(tmp_path, monkeypatch):
    """torchvision's Fashion-MNIST download pointed at a local web server of small .gz files (their own MD5 sums
    replacing the official ones): the arrays it serves."""
    arrays = small_idx_arrays(seed=2)
    served = tmp_path / 'served'
    write_idx_folder(served, arrays, gzipped=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(dataset_management, 'DEBIAN_FASHION_MNIST', str(tmp_path / 'no-package'))
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, 'mirrors', [f'http://127.0.0.1:{server.server_port}/'])
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, 'resources', [
        (f'{name}.gz', hashlib.md5((served / f'{name}.gz').read_bytes()).hexdigest())
        for name in dataset_management.IDX_FILES])
    yield arrays
    server.shutdown()


def test_fashion_mnist_is_downloaded_by_torchvision_when_it_is_in_neither_folder(fashion_mnist_server, tmp_path):
    splits = dataset_management.load_splits('fashion-mnist', str(tmp_path / 'data'), validation_size=10)
    assert_splits_hold(splits, fashion_mnist_server, 10)
    assert (tmp_path / 'data' / 'FashionMNIST' / 'raw' / 'train-images-idx3-ubyte').is_file()


def test_fashion_mnist_in_no_place_is_one_line_naming_the_three_and_the_package_with_exit_status_2(
        tmp_path, no_downloads, capsys):
    stderr = refused(experiment.main, ['--dataset', 'fashion-mnist', '--data-dir', str(tmp_path / 'data'),
                                       '--output', str(tmp_path / 'results.csv')], capsys)
    assert f'fashion-mnist is not in {tmp_path / "data"}/ and could not be downloaded (' in stderr
    assert f'in {tmp_path / "data"}/FashionMNIST/raw/, or install Debian\'s package (apt-get install ' \
           f'dataset-fashion-mnist puts them in {dataset_management.DEBIAN_FASHION_MNIST}/' in stderr
    assert 'train-images-idx3-ubyte' in stderr and '(or the same names ending in .gz)' in stderr
    assert list(tmp_path.iterdir()) == []  # neither a data folder nor a results file


@pytest.mark.parametrize('damage, named', [
    (lambda folder: (folder / 'train-labels-idx1-ubyte').write_bytes(
        (folder / 'train-labels-idx1-ubyte').read_bytes()[:-1]),
     'train-labels-idx1-ubyte holds 29 bytes of data, not the 30 its header gives: it is cut short or damaged'),
    (lambda folder: write_idx(folder / 't10k-labels-idx1-ubyte', np.zeros(9, np.uint8)),
     "fashion-mnist's test set in {folder} has 10 images but 9 labels: its files do not belong together"),
    (lambda folder: (folder / 't10k-images-idx3-ubyte').write_bytes(b'PK\x03\x04 a zip file'),
     't10k-images-idx3-ubyte is not an IDX file of unsigned bytes (its first bytes are 504b0304)'),
])
def test_fashion_mnist_files_cut_short_or_not_belonging_together_are_refused(damage, named, tmp_path, no_downloads):
    folder = tmp_path / 'FashionMNIST' / 'raw'
    write_idx_folder(folder, small_idx_arrays(), gzipped=False)
    damage(folder)
    with pytest.raises(dataset_management.DatasetError) as error:
        dataset_management.load_splits('fashion-mnist', str(tmp_path), validation_size=5)
    assert named.format(folder=folder) in str(error.value) and '\n' not in str(error.value)


def test_a_gzip_file_cut_short_is_refused_in_one_line(tmp_path, no_downloads):
    folder = tmp_path / 'FashionMNIST' / 'raw'
    write_idx_folder(folder, small_idx_arrays(), gzipped=True)
    gzipped = folder / 'train-images-idx3-ubyte.gz'
    gzipped.write_bytes(gzipped.read_bytes()[:100])
    with pytest.raises(dataset_management.DatasetError, match='train-images-idx3-ubyte.gz cannot be read .Compressed'):
        dataset_management.load_splits('fashion-mnist', str(tmp_path), validation_size=5)


def test_the_real_fashion_mnist_loads_as_its_readme_describes_it(fashion_mnist_dir):
    splits = dataset_management.load_splits('fashion-mnist', str(fashion_mnist_dir))
    assert [tuple(split.images.shape) for split in splits] == [(50000, 1, 28, 28), (10000, 1, 28, 28),
                                                               (10000, 1, 28, 28)]
    labels = torch.cat([splits.train.labels, splits.validation.labels])
    assert torch.bincount(labels).tolist() == [6000] * 10 and torch.bincount(splits.test.labels).tolist() == [1000] * 10
    raw = gzip.decompress((FASHION_MNIST / 'train-images-idx3-ubyte.gz').read_bytes())
    # the uncompressed training images (the shared folder's README gives this MD5 to the test images: swapped)
    assert hashlib.md5(raw).hexdigest() == 'f4a8712d7a061bf5bd6d2ca38dc4d50a'
    first = torch.frombuffer(bytearray(raw[16:16 + 784]), dtype=torch.uint8).reshape(28, 28)
    assert torch.equal(splits.train.images[0, 0], first.float() / 255)


def test_a_fashion_mnist_network_trained_on_10000_real_images_is_above_75_percent(fashion_mnist_dir, capsys):
    network.main(['--dataset', 'fashion-mnist', '--data-dir', str(fashion_mnist_dir), '--training-size', '10000',
                  '--epochs', '5', '--learning-rate', '0.1', '--weight-decay', '0', '--device', 'cpu'])
    scores = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert float(scores['val_accuracy']) > 0.75 and float(scores['test_accuracy']) > 0.75


# --training-size: the first N images of the training split

def test_the_training_size_takes_the_first_images_before_the_validation_split():
    whole = dataset_management.load_splits('digits')
    first = dataset_management.load_splits('digits', training_size=100)
    assert torch.equal(first.train.images, whole.train.images[:100])
    assert torch.equal(first.train.labels, whole.train.labels[:100])
    assert torch.equal(first.validation.images, whole.validation.images)
    assert torch.equal(first.test.images, whole.test.images)
    assert len(dataset_management.load_splits('digits', training_size=1077).train.images) == 1077
    with pytest.raises(ValueError, match=r'--training-size 1078 is out of range for digits: it must be between 1 and '
                                         r'1077 \(its training set has 1437 images, 360 of them for validation\)'):
        dataset_management.load_splits('digits', training_size=1078)


def test_a_training_size_larger_than_the_data_found_is_refused_before_anything_is_written(mnist_dir, capsys):
    folder, _ = mnist_dir  # 30 training images
    stderr = refused(experiment.main, ['--dataset', 'mnist', '--data-dir', str(folder), '--validation-size', '10',
                                       '--training-size', '21', '--device', 'cpu',
                                       '--output', str(folder / 'results.csv')], capsys)
    assert '--training-size 21 is out of range for mnist: it must be between 1 and 20' in stderr
    assert not (folder / 'results.csv').exists()


# Every dataset one entry

def test_a_dataset_added_as_one_entry_is_a_choice_of_every_script_and_runs(tmp_path, monkeypatch, capsys):
    def load(name, data_dir):
        generator = torch.Generator().manual_seed(0)
        sets = [dataset_management.Split(torch.rand(size, 1, 20, 20, generator=generator),
                                         torch.randint(0, 10, (size,), generator=generator)) for size in (40, 8)]
        return (*sets, 'memory')
    monkeypatch.setitem(dataset_management.DATASETS, 'tiny', dataset_management.Dataset(
        (1, 20, 20), 40, 8, folder=(), files='', load=load))
    help_text = experiment.build_parser().format_help()
    assert '{cifar10,mnist,fashion-mnist,digits,tiny}' in help_text and '8 for tiny' in ' '.join(help_text.split())
    stderr = refused(experiment.main, ['--dataset', 'tiny', '--training-size', '33', '--output',
                                       str(tmp_path / 'results.csv')], capsys)
    assert '--training-size 33 is out of range for tiny: it must be between 1 and 32' in stderr
    experiment.main(['--dataset', 'tiny', '--method', 'random', '--evaluations', '2', '--repetitions', '1',
                     '--epochs', '1', '--device', 'cpu', '--quiet', '--output', str(tmp_path / 'results.csv')])
    assert '"dataset": "tiny"' in (tmp_path / 'results.config.json').read_text()
