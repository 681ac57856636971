"""The data: CIFAR-10, MNIST, Fashion-MNIST and scikit-learn's digits as tensors, split into train / validation / test.

Each dataset is one entry of DATASETS: the network's input shape, the sizes of its splits, where its files go and how
they are read. Each split is a pair of tensors loaded once and kept on the training device: images as float32 in
[0, 1] (N x C x H x W, exactly the values torchvision's ToTensor gives; channels-last in memory on CPU) and labels as
int64.
"""
import contextlib
import functools
import gzip
import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

CLASSES = 10  # every dataset's labels are 0..9
DIGITS_TEST_SIZE = 360  # scikit-learn's 1,797 digits have no official test set: the last 360 (20%) are ours
# Where Debian's package dataset-fashion-mnist puts Fashion-MNIST's four .gz files
DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'
IDX_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


class DatasetError(Exception):
    """The dataset cannot be used: not found, unreadable, or its files do not belong together (one line)."""


class DatasetNotFoundError(DatasetError):
    """The dataset is in none of the places it is looked for, and cannot be downloaded."""


class Split(NamedTuple):
    images: torch.Tensor  # float32 in [0, 1], N x C x H x W
    labels: torch.Tensor  # int64, N


class Splits(NamedTuple):
    train: Split
    validation: Split
    test: Split


class Dataset(NamedTuple):
    """One dataset: the network's input, the size of its official training set and of the validation split taken
    from its end by default, where in the data folder its files go and which (for the messages), and how it is read:
    load(name, data_dir) -> its official training set and test set as Splits on the CPU, and the folder they were
    read from."""
    input_shape: tuple  # C x H x W
    training_set_size: int
    validation_size: int
    folder: tuple  # subfolders of the data folder that hold its files (torchvision's)
    files: str  # what to put there, or how else to get it: {data_dir} and {debian} stand for the folders
    load: Callable


def check_sizes(dataset, validation_size, training_size, training_set_size):
    """Raise ValueError unless 1 <= validation_size < training_set_size, and training_size is None (all) or between 1
    and the images left for training once the validation split is taken."""
    if not 1 <= validation_size < training_set_size:
        raise ValueError(f'--validation-size {validation_size} is out of range for {dataset}: it must be '
                         f'between 1 and {training_set_size - 1} (its training set has {training_set_size} images)')
    left = training_set_size - validation_size
    if training_size is not None and not 1 <= training_size <= left:
        raise ValueError(f'--training-size {training_size} is out of range for {dataset}: it must be between 1 and '
                         f'{left} (its training set has {training_set_size} images, {validation_size} of them for '
                         'validation)')


def checked_sizes(dataset, validation_size, training_size):
    """The validation size of a run on `dataset` (the dataset's default for None); ValueError (one line) for a dataset
    that is not one of DATASETS, or a size out of range for its official training set."""
    if dataset not in DATASETS:
        raise ValueError(f'unknown dataset {dataset!r}: choose from {", ".join(DATASETS)}')
    validation_size = DATASETS[dataset].validation_size if validation_size is None else validation_size
    check_sizes(dataset, validation_size, training_size, DATASETS[dataset].training_set_size)
    return validation_size


def data_folders(dataset, data_dir):
    """The data folder and its subfolders down to the one that holds the dataset's files; DatasetError if one that
    exists cannot be listed: torchvision would take it for an empty one."""
    folder = DATASETS[dataset].folder
    folders = [os.path.join(data_dir, *folder[:depth]) for depth in range(len(folder) + 1)]
    for existing in filter(os.path.isdir, folders):
        try:
            os.listdir(existing)
        except OSError as error:
            raise DatasetError(f'{existing} cannot be read ({error.strerror}), so {dataset} cannot be loaded from it')
    return folders


def load_with_torchvision(dataset, data_dir, *, class_name):
    """The official sets of a torchvision dataset (torchvision.datasets.`class_name`) found in, or downloaded to, its
    folder under data_dir. DatasetNotFoundError if neither; a download that fails leaves no folder it made."""
    folders = data_folders(dataset, data_dir)
    made = [str(folder) for folder in [*reversed(Path(data_dir).absolute().parents), *map(Path, folders)]
            if not folder.exists()]  # by a download, which fails offline
    # imported here, not at the top: torchvision's import takes seconds (its models import torch._dynamo), and the
    # digits, which the quick start and the tests use, need none of it
    import torchvision
    try:
        official = [getattr(torchvision.datasets, class_name)(data_dir, train=train, download=True)
                    for train in (True, False)]
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError, ... when offline
        for folder in reversed(made):  # deepest first: a refused run leaves no folder
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise DatasetNotFoundError(
            f'{dataset} is not in {data_dir}/ and could not be downloaded ({type(error).__name__}: '
            f'{str(error).splitlines()[0] if str(error) else "no detail"}); put '
            + DATASETS[dataset].files.format(data_dir=data_dir, debian=DEBIAN_FASHION_MNIST)) from error
    return (*(to_split(torch.as_tensor(data.data), torch.as_tensor(data.targets)) for data in official), folders[-1])


def idx_path(folder, name):
    """The IDX file `name` in `folder`, uncompressed or else gzipped (name.gz); None if neither is there."""
    for path in (os.path.join(folder, name), os.path.join(folder, name + '.gz')):
        if os.path.isfile(path):
            return path
    return None


def read_idx(path):
    """An IDX file of unsigned bytes (MNIST's format: a magic number whose last byte counts the dimensions, the
    dimensions as big-endian 32-bit integers, then the bytes), gzipped if its name ends in .gz, as a uint8 tensor.
    Written here because torchvision's reader takes only uncompressed files, and its download, which would
    uncompress them, checks MD5 sums that Debian's recompressed .gz files do not have. DatasetError if the file is
    not such a file or is cut short."""
    try:
        with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as file:
            data = file.read()
    except (OSError, EOFError) as error:  # no permission; a gzip stream cut short or damaged
        raise DatasetError(f'{path} cannot be read ({error})') from None
    dimensions = data[3] if len(data) >= 4 and data[:3] == b'\0\0\x08' else 0
    shape = np.frombuffer(data, '>u4', count=dimensions, offset=4).tolist() if len(data) >= 4 + 4 * dimensions else []
    if not 1 <= dimensions <= 3 or len(shape) != dimensions:
        raise DatasetError(f'{path} is not an IDX file of unsigned bytes (its first bytes are {data[:4].hex()})')
    if len(data) != 4 + 4 * dimensions + int(np.prod(shape)):
        raise DatasetError(f'{path} holds {len(data) - 4 - 4 * dimensions} bytes of data, not the '
                           f'{" x ".join(map(str, shape))} its header gives: it is cut short or damaged')
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=4 + 4 * dimensions).reshape(shape).copy())


def load_fashion_mnist(dataset, data_dir):
    """Fashion-MNIST's sets from the first place that holds its four IDX files (uncompressed or .gz): its folder
    under data_dir, else Debian's package folder; else torchvision's download."""
    places = data_folders(dataset, data_dir)
    for folder in (places[-1], DEBIAN_FASHION_MNIST):
        paths = [idx_path(folder, name) for name in IDX_FILES]
        if None not in paths:
            images, labels, test_images, test_labels = map(read_idx, paths)
            for path, array, dimensions in zip(paths, (images, labels, test_images, test_labels), (3, 1, 3, 1)):
                if array.dim() != dimensions:
                    raise DatasetError(f'{path} holds {array.dim()}-dimensional data, not the {dimensions} of its name')
            return to_split(images, labels), to_split(test_images, test_labels), folder
    return load_with_torchvision(dataset, data_dir, class_name='FashionMNIST')


def load_digits(dataset, data_dir):
    """scikit-learn's 8x8 digits (values 0..16), scaled to [0, 1] and resized bilinearly to 1x28x28; no files."""
    from sklearn.datasets import load_digits as digits_of_scikit_learn  # only this offline dataset needs it here
    digits = digits_of_scikit_learn()
    images = torch.tensor(digits.images, dtype=torch.float32).div(16).unsqueeze(1)
    images = F.interpolate(images, size=(28, 28), mode='bilinear', align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    cut = len(images) - DIGITS_TEST_SIZE
    return Split(images[:cut], labels[:cut]), Split(images[cut:], labels[cut:]), 'scikit-learn'


MNIST_FILES = ', '.join(IDX_FILES[:-1]) + f' and {IDX_FILES[-1]} (or the same names ending in .gz)'
DATASETS = {
    'cifar10': Dataset((3, 32, 32), 50_000, 10_000, folder=(),
                       files='cifar-10-python.tar.gz, or its folder cifar-10-batches-py/ (data_batch_1 ... '
                             'data_batch_5, test_batch, batches.meta), in {data_dir}/',
                       load=functools.partial(load_with_torchvision, class_name='CIFAR10')),
    'mnist': Dataset((1, 28, 28), 60_000, 10_000, folder=('MNIST', 'raw'),
                     files=MNIST_FILES + ' in {data_dir}/MNIST/raw/',
                     load=functools.partial(load_with_torchvision, class_name='MNIST')),
    # Zalando's clothing images in MNIST's format: small CNNs reach about 90% on it (99% on MNIST), so the
    # hyperparameters matter, as on CIFAR-10
    'fashion-mnist': Dataset((1, 28, 28), 60_000, 10_000, folder=('FashionMNIST', 'raw'),
                             files=MNIST_FILES + ' in {data_dir}/FashionMNIST/raw/, or install Debian\'s package '
                                   '(apt-get install dataset-fashion-mnist puts them in {debian}/, '
                                   'where they are looked for next)',
                             load=load_fashion_mnist),
    'digits': Dataset((1, 28, 28), 1_437, 360, folder=(), files='', load=load_digits),  # comes with scikit-learn
}


def check_set(dataset, name, split, folder):
    """DatasetError unless a loaded set has one label per image, every label a class, and images of the network's
    shape: files that do not belong together would otherwise fail in training, after the first output."""
    images, labels = split
    where = f'{dataset}\'s {name} set in {folder}'
    if len(images) != len(labels):
        raise DatasetError(f'{where} has {len(images)} images but {len(labels)} labels: its files do not belong '
                           'together')
    if tuple(images.shape[1:]) != DATASETS[dataset].input_shape:
        raise DatasetError(f'{where} holds images of {" x ".join(map(str, images.shape[1:]))}, not '
                           f'{" x ".join(map(str, DATASETS[dataset].input_shape))}')
    outside = labels[(labels < 0) | (labels >= CLASSES)]
    if len(outside):
        raise DatasetError(f'{where} has a label {outside[0].item()}: the classes are 0 to {CLASSES - 1}')


def to_split(images_uint8, labels):
    """uint8 images (N x H x W or N x H x W x C) -> float32 N x C x H x W in [0, 1], as ToTensor does."""
    images = images_uint8.unsqueeze(-1) if images_uint8.dim() == 3 else images_uint8
    return Split(images.permute(0, 3, 1, 2).float().div(255), labels.long())


def memory_format(device):
    """How images and networks are laid out on `device`: channels-last (N x H x W x C) on CPU, where convolutions
    run about 1.5x faster so; the usual N x C x H x W on a GPU, where it is the faster one."""
    return torch.channels_last if torch.device(device).type == 'cpu' else torch.contiguous_format


def to_device(split, device):
    """The split on `device`, its images in that device's memory format."""
    return Split(split.images.to(device, memory_format=memory_format(device)), split.labels.to(device))


def load_splits(dataset, data_dir='data', validation_size=None, device='cpu', training_size=None):
    """Load `dataset` once and return its train / validation / test Splits on `device`.

    Validation is the last `validation_size` images of the official training set (the dataset's default when None);
    training the first `training_size` images before them (all when None); test is the official test set.
    """
    validation_size = checked_sizes(dataset, validation_size, training_size)  # before anything is loaded
    *sets, folder = DATASETS[dataset].load(dataset, data_dir)  # DatasetError if they cannot be read
    for name, split in zip(('training', 'test'), sets):
        check_set(dataset, name, split, folder)
    training_set, test_set = sets
    check_sizes(dataset, validation_size, training_size, len(training_set.images))  # the data found may hold fewer
    cut = len(training_set.images) - validation_size
    used = cut if training_size is None else training_size
    splits = Splits(train=Split(training_set.images[:used], training_set.labels[:used]),
                    validation=Split(training_set.images[cut:], training_set.labels[cut:]),
                    test=test_set)
    return Splits(*(to_device(split, device) for split in splits))
