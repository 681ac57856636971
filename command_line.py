"""Command-line plumbing shared by test.py, network.py and bench.py: one-line errors, help that shows the defaults,
the data flags and the checks every script makes of them. The defaults themselves are each script's constants."""
import argparse
import os

import torch

import dataset_management


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, its errors one line."""

    def error(self, message):
        """Exit with status 2 and one line naming the bad value and what is allowed (no usage block)."""
        self.fail(2, message)

    def fail(self, status, message, kind='error'):
        """Exit with `status` and the message as one line, whatever a path in it holds."""
        one_line = message.replace('\r', '\\r').replace('\n', '\\n')
        self.exit(status, f'{self.prog}: {kind}: {one_line}\n')


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def or_none(kind):
    """An argparse type: kind(text), or None for the text None (how a saved configuration's null reads as a flag)."""
    def parse(text):
        return None if text == 'None' else kind(text)
    parse.__name__ = f'{kind.__name__} or None'  # argparse's error: invalid int or None value: 'x'
    return parse


def flag(name):
    """The flag of an argparse destination: 'batch_size' -> '--batch-size'."""
    return '--' + name.replace('_', '-')


def check_positive_integers(parser, args, *names):
    """End with a one-line error if a flag among `names` (one number, or a list of them; None: not given) holds one
    below 1: the flags' values and constants edited by hand are checked alike."""
    for name in names:
        value = getattr(args, name)
        for number in value if isinstance(value, (list, tuple)) else [] if value is None else [value]:
            if number < 1:
                parser.error(f'{flag(name)} {number} must be a positive integer')


def add_data_arguments(parser, *, dataset, data_dir, validation_size, training_size, batch_size, device,
                       computation=None, files=None):
    """The data flags, with the calling script's defaults: --device in argument group `computation` and --data-dir in
    `files` where the script groups its flags (else in `parser`, as the others)."""
    parser.add_argument('--dataset', choices=dataset_management.DATASETS, default=dataset, help='the images')
    defaults = ', '.join(f'{size} for {name}' for name, size in
                         [(name, data.validation_size) for name, data in dataset_management.DATASETS.items()])
    parser.add_argument('--validation-size', type=int, default=validation_size,
                        help=f'images at the end of the training set kept for validation (None: {defaults})')
    parser.add_argument('--training-size', type=or_none(int), default=training_size, metavar='N',
                        help='train on the first N images of the training set, before the validation images (None: '
                             'all of them)')
    parser.add_argument('--batch-size', type=int, default=batch_size, help='for training, validation and test')
    add_device_argument(computation or parser, device)
    (files or parser).add_argument('--data-dir', default=data_dir, help='where the dataset is, or is downloaded to')


def add_device_argument(parser, device):
    """The --device flag, with the calling script's default."""
    parser.add_argument('--device', default=device, help='cpu, cuda or cuda:N')


def check_data_arguments(parser, args):
    """End with a one-line error for a bad data flag; fill in the dataset's default validation size."""
    try:
        args.validation_size = dataset_management.checked_sizes(args.dataset, args.validation_size, args.training_size)
    except ValueError as error:
        parser.error(str(error))
    check_positive_integers(parser, args, 'batch_size')
    check_device(parser, args.device)
    check_data_dir(parser, args)


def check_data_dir(parser, args):
    """End with a one-line error if the dataset has files and args.data_dir exists but cannot be read."""
    if dataset_management.DATASETS[args.dataset].files and os.path.exists(args.data_dir):  # digits: scikit-learn's
        try:
            os.listdir(args.data_dir)
        except OSError as error:
            parser.error(f'--data-dir {args.data_dir} cannot be read ({error.strerror})')


def check_device(parser, name, *, here=True):
    """End with a one-line error unless `name` is cpu or a CUDA device (one that exists on this machine, if
    `here`)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda'):
        parser.error(f'--device {name!r} is not allowed: use cpu, cuda or cuda:N')
    if here and device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        parser.error(f'--device {name}: there is no such CUDA device here ({torch.cuda.device_count()} CUDA devices)')


def load_data(parser, args):
    """The splits, loaded once onto args.device; a dataset missing ends the run with one line and exit status 2, one
    unreadable or inconsistent with exit status 1."""
    try:
        return dataset_management.load_splits(args.dataset, args.data_dir, args.validation_size, args.device,
                                              args.training_size)
    except (ValueError, dataset_management.DatasetNotFoundError) as error:  # sizes too large for the data found
        parser.error(str(error))
    except dataset_management.DatasetError as error:
        parser.fail(1, str(error))
