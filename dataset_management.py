"""The data: CIFAR-10, MNIST and scikit-learn's digits as tensors, split into train / validation / test.

Each split is a pair of tensors loaded once and kept on the training device: images as float32 in [0, 1]
(N x C x H x W, exactly the values torchvision's ToTensor gives; channels-last in memory on CPU) and labels as
int64.
"""
import contextlib
import os
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

DATASETS = ('cifar10', 'mnist', 'digits')
INPUT_SHAPES = {'cifar10': (3, 32, 32), 'mnist': (1, 28, 28), 'digits': (1, 28, 28)}
TRAINING_SET_SIZES = {'cifar10': 50_000, 'mnist': 60_000, 'digits': 1_437}
DEFAULT_VALIDATION_SIZES = {'cifar10': 10_000, 'mnist': 10_000, 'digits': 360}
DIGITS_TEST_SIZE = 360  # scikit-learn's 1,797 digits have no official test set: the last 360 (20%) are ours

CLASSES = 10  # every dataset's labels are 0..9
SUBFOLDERS = {'cifar10': (), 'mnist': ('MNIST', 'raw')}  # where in the data folder torchvision finds the files
EXPECTED_FILES = {
    'cifar10': 'cifar-10-python.tar.gz, or its folder cifar-10-batches-py/ '
               '(data_batch_1 ... data_batch_5, test_batch, batches.meta), in {data_dir}/',
    'mnist': 'train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and '
             't10k-labels-idx1-ubyte (or the same names ending in .gz) in {data_dir}/MNIST/raw/',
}


class DatasetError(Exception):
    """The dataset cannot be used: not found, unreadable, or its files do not belong together (one line)."""


class DatasetNotFoundError(DatasetError):
    """The dataset is neither in the data folder nor downloadable."""


class Split(NamedTuple):
    images: torch.Tensor  # float32 in [0, 1], N x C x H x W
    labels: torch.Tensor  # int64, N


class Splits(NamedTuple):
    train: Split
    validation: Split
    test: Split


def check_validation_size(dataset, validation_size, training_set_size):
    """Raise ValueError unless 1 <= validation_size < training_set_size."""
    if not 1 <= validation_size < training_set_size:
        raise ValueError(f'--validation-size {validation_size} is out of range for {dataset}: it must be '
                         f'between 1 and {training_set_size - 1} (its training set has {training_set_size} images)')


def load_official_sets(dataset, data_dir):
    """Return the official (training set, test set) of `dataset` as Splits on the CPU, checked (check_set).
    DatasetError if they cannot be read; a download that fails leaves no folder it made."""
    if dataset == 'digits':
        return _load_digits()
    chain = [os.path.join(data_dir, *SUBFOLDERS[dataset][:depth]) for depth in range(len(SUBFOLDERS[dataset]) + 1)]
    for folder in filter(os.path.isdir, chain):  # torchvision would take an unreadable folder for an empty one
        try:
            os.listdir(folder)
        except OSError as error:
            raise DatasetError(f'{folder} cannot be read ({error.strerror}), so {dataset} cannot be loaded from it')
    made = [str(folder) for folder in [*reversed(Path(data_dir).absolute().parents), *map(Path, chain)]
            if not folder.exists()]  # by a download, which fails offline
    # imported here, not at the top: torchvision's import takes seconds (its models import torch._dynamo), and the
    # digits, which the quick start and the tests use, need none of it
    import torchvision
    dataset_class = {'cifar10': torchvision.datasets.CIFAR10, 'mnist': torchvision.datasets.MNIST}[dataset]
    try:
        official = [dataset_class(data_dir, train=train, download=True) for train in (True, False)]
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError, ... when offline
        for folder in reversed(made):  # deepest first: a refused run leaves no folder
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise DatasetNotFoundError(
            f'{dataset} is not in {data_dir}/ and could not be downloaded ({type(error).__name__}: '
            f'{str(error).splitlines()[0] if str(error) else "no detail"}); put '
            + EXPECTED_FILES[dataset].format(data_dir=data_dir)) from error
    sets = [to_split(torch.as_tensor(data.data), torch.as_tensor(data.targets)) for data in official]
    for name, split in zip(('training', 'test'), sets):
        check_set(dataset, name, split, chain[-1])
    return tuple(sets)


def check_set(dataset, name, split, folder):
    """DatasetError unless a loaded set has one label per image, every label a class, and images of the network's
    shape: files that do not belong together would otherwise fail in training, after the first output."""
    images, labels = split
    where = f'{dataset}\'s {name} set in {folder}'
    if len(images) != len(labels):
        raise DatasetError(f'{where} has {len(images)} images but {len(labels)} labels: its files do not belong '
                           'together')
    if tuple(images.shape[1:]) != INPUT_SHAPES[dataset]:
        raise DatasetError(f'{where} holds images of {" x ".join(map(str, images.shape[1:]))}, not '
                           f'{" x ".join(map(str, INPUT_SHAPES[dataset]))}')
    outside = labels[(labels < 0) | (labels >= CLASSES)]
    if len(outside):
        raise DatasetError(f'{where} has a label {outside[0].item()}: the classes are 0 to {CLASSES - 1}')


def to_split(images_uint8, labels):
    """uint8 images (N x H x W or N x H x W x C) -> float32 N x C x H x W in [0, 1], as ToTensor does."""
    images = images_uint8.unsqueeze(-1) if images_uint8.dim() == 3 else images_uint8
    return Split(images.permute(0, 3, 1, 2).float().div(255), labels.long())


def _load_digits():
    """scikit-learn's 8x8 digits (values 0..16), scaled to [0, 1] and resized bilinearly to 1x28x28."""
    from sklearn.datasets import load_digits  # imported here: only this offline dataset needs scikit-learn
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).div(16).unsqueeze(1)
    images = F.interpolate(images, size=(28, 28), mode='bilinear', align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    cut = len(images) - DIGITS_TEST_SIZE
    return Split(images[:cut], labels[:cut]), Split(images[cut:], labels[cut:])


def memory_format(device):
    """How images and networks are laid out on `device`: channels-last (N x H x W x C) on CPU, where convolutions
    run about 1.5x faster so; the usual N x C x H x W on a GPU, where it is the faster one."""
    return torch.channels_last if torch.device(device).type == 'cpu' else torch.contiguous_format


def to_device(split, device):
    """The split on `device`, its images in that device's memory format."""
    return Split(split.images.to(device, memory_format=memory_format(device)), split.labels.to(device))


def load_splits(dataset, data_dir='data', validation_size=None, device='cpu'):
    """Load `dataset` once and return its train / validation / test Splits on `device`.

    Validation is the last `validation_size` images of the official training set (the dataset's
    default when None); test is the official test set.
    """
    if dataset not in DATASETS:
        raise ValueError(f'unknown dataset {dataset!r}: choose from {", ".join(DATASETS)}')
    if validation_size is None:
        validation_size = DEFAULT_VALIDATION_SIZES[dataset]
    training_set, test_set = load_official_sets(dataset, data_dir)
    check_validation_size(dataset, validation_size, len(training_set.images))
    cut = len(training_set.images) - validation_size
    splits = Splits(train=Split(training_set.images[:cut], training_set.labels[:cut]),
                    validation=Split(training_set.images[cut:], training_set.labels[cut:]),
                    test=test_set)
    return Splits(*(to_device(split, device) for split in splits))
