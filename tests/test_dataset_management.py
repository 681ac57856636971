"""The data: real torchvision loading of MNIST / CIFAR-10 files, digits, splits, and a missing, unreadable or
inconsistent dataset."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import ROOT, write_mnist
from torchvision.transforms import ToTensor

import dataset_management


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
