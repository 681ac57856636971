"""How fast the paper's CIFAR-10 network trains here, in model-epochs per second (one network trained for one
epoch is one model-epoch), three ways on the same synthetic CIFAR-shaped data:

  (a) the authors' pipeline: a Dataset that turns each image into a tensor with ToTensor when it is read,
      through a DataLoader, one network at a time;
  (b) this project's one-model path: the images already tensors on the device, batches are slices;
  (c) the population path: K networks trained in lockstep as one batched computation.

It prints each figure, its ratio to (a), and the wall time that rate gives the paper's full experiment
(2 methods x 10 repetitions x 25 evaluations x 50 epochs = 25,000 model-epochs of 40,000 images, scaled from the
--images measured), and that of the searches as test.py runs them on a GPU. --json adds, as the last line, one
JSON object with the same figures.
"""
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

import command_line
import dataset_management
import network
import report
import test  # the experiment whose training time is estimated

PAPER_IMAGES = 40_000  # CIFAR-10's training split in the paper: one model-epoch of the full experiment
IMAGES = PAPER_IMAGES  # synthetic images per measured epoch (--images)
POPULATIONS = (10, 25, 250)  # population sizes measured: 10 Bayesian repetitions in lockstep, 250 Sobol points
BATCH_SIZE = 64  # as in the paper
SEED = 0  # seeds the synthetic images
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
FULL_EXPERIMENT = len(test.METHODS) * test.REPETITIONS * test.EVALUATIONS * test.EPOCHS  # model-epochs
LEARNING_RATE_RANGE = test.LEARNING_RATE_BOUNDS  # the population's members spread over it
WEIGHT_DECAY = 0.0005


class AuthorsDataset(torch.utils.data.Dataset):
    """Images as torchvision's CIFAR10 keeps them (uint8, H x W x C), made a PIL image and then a tensor by
    ToTensor each time one is read."""

    def __init__(self, images, labels):
        self.images, self.labels, self.to_tensor = images, labels, transforms.ToTensor()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.to_tensor(Image.fromarray(self.images[index])), self.labels[index]


def authors_pipeline(images, labels, *, batch_size, device):
    """(a): a function that trains a fresh network for one epoch on the first `count` images and returns it."""
    def train_epoch(count):
        loader = torch.utils.data.DataLoader(AuthorsDataset(images[:count], labels[:count]), batch_size=batch_size)
        model = network.build_network(input_shape=(3, 32, 32), seed=0, device=device)
        model = model.to(memory_format=torch.contiguous_format)  # their tensors are N x C x H x W in memory
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, weight_decay=WEIGHT_DECAY)
        for batch_images, batch_labels in loader:
            batch_images, batch_labels = batch_images.to(device), batch_labels.to(device)
            loss = F.nll_loss(model(batch_images), batch_labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model
    return train_epoch


def one_model_path(split, *, batch_size):
    """(b): a function that trains a fresh network for one epoch on the first `count` images and returns it."""
    def train_epoch(count):
        model = network.build_network(input_shape=(3, 32, 32), seed=0, device=split.images.device)
        network.train(model, split.images[:count], split.labels[:count], learning_rate=0.01,
                      weight_decay=WEIGHT_DECAY, epochs=1, batch_size=batch_size)
        return model
    return train_epoch


def population_path(split, members, *, batch_size):
    """(c): a function that trains a fresh population (seeds 0..members-1) for one epoch on the first `count`
    images and returns its parameters."""
    learning_rates = np.linspace(*LEARNING_RATE_RANGE, members).tolist()

    def train_epoch(count):
        parameters = network.build_population(input_shape=(3, 32, 32), seeds=range(members),
                                              device=split.images.device)
        network.train_population(parameters, split.images[:count], split.labels[:count],
                                 learning_rates=learning_rates, weight_decays=[WEIGHT_DECAY] * members, epochs=1,
                                 batch_size=batch_size)
        return parameters
    return train_epoch


def model_epochs_per_second(train_epoch, *, images, members, batch_size, device):
    """Time one epoch of train_epoch on `images` images, after a few batches of warm-up (CUDA context, cuDNN
    and allocator set-up, which a 50-epoch run pays once)."""
    train_epoch(2 * batch_size)
    synchronize(device)
    start = time.perf_counter()
    train_epoch(images)
    synchronize(device)
    return members / (time.perf_counter() - start)


def synchronize(device):
    """Wait for the device's queued work (CUDA runs asynchronously)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def build_parser():
    parser = command_line.ArgumentParser(description=__doc__, formatter_class=command_line.HelpFormatter)
    parser.add_argument('--images', type=int, default=IMAGES, help='synthetic training images per epoch')
    parser.add_argument('--batch-size', type=int, default=BATCH_SIZE, help='as in the paper')
    parser.add_argument('--populations', type=int, nargs='+', default=POPULATIONS, metavar='K',
                        help='population sizes to measure')
    command_line.add_device_argument(parser, DEVICE)
    parser.add_argument('--seed', type=int, default=SEED, help='seeds the synthetic images')
    parser.add_argument('--json', action='store_true', help='end with one line of JSON holding every figure')
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    command_line.check_positive_integers(parser, args, 'images', 'batch_size', 'populations')
    if args.seed < 0:
        parser.error(f'--seed {args.seed} must be a non-negative integer')
    command_line.check_device(parser, args.device)
    device, name = torch.device(args.device), network.device_name(args.device)
    print(f'{args.images} synthetic CIFAR-shaped images, batch {args.batch_size}, on {name}', flush=True)

    generator = np.random.default_rng(args.seed)
    images = generator.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    labels = generator.integers(0, 10, size=args.images).tolist()
    split = dataset_management.to_device(dataset_management.to_split(torch.from_numpy(images), torch.tensor(labels)),
                                         device)
    paths = [('authors_pipeline', 1, authors_pipeline(images, labels, batch_size=args.batch_size, device=device)),
             ('one_model', 1, one_model_path(split, batch_size=args.batch_size))]
    paths += [('population', members, population_path(split, members, batch_size=args.batch_size))
              for members in args.populations]
    rates = []
    for path, members, train_epoch in paths:
        rates.append(model_epochs_per_second(train_epoch, images=args.images, members=members,
                                             batch_size=args.batch_size, device=device))
        print(f'{path} K={members}: {rates[-1]:.3f} model-epochs/s', flush=True)

    seconds = [FULL_EXPERIMENT * PAPER_IMAGES / args.images / rate for rate in rates]  # the paper's experiment
    columns = [('Path', '{}'), ('K', '{:d}'), ('Model-epochs/s', '{:.3f}'), ('x Authors', '{:.1f}'),
               ('Full experiment (h)', '{:.2f}')]
    figures = [(path, members, rate, rate / rates[0], time / 3600)
               for (path, members, _), rate, time in zip(paths, rates, seconds)]
    report.print_table(report.Table(f'Training speed on {name}: {args.images} images per epoch, batch '
                                    f'{args.batch_size}; the full experiment is {FULL_EXPERIMENT:,} model-epochs of '
                                    f'{PAPER_IMAGES:,} images', columns, figures))
    sizes = [str(members) for _, members, _ in paths[2:]]
    full_experiment_seconds = {'authors_pipeline': seconds[0], 'one_model': seconds[1],
                               'population': dict(zip(sizes, seconds[2:]))}
    bayesian, sobol = str(test.REPETITIONS), str(test.default_population(device))  # test.py's, half the work each
    if device.type == 'cuda' and {bayesian, sobol} <= set(sizes):
        population = full_experiment_seconds['population']
        full_experiment_seconds['searches'] = (population[bayesian] + population[sobol]) / 2
        print(f'The full experiment as test.py runs it on a GPU (the Bayesian repetitions as populations of '
              f'{bayesian}, the Sobol points as populations of {sobol}): '
              f'{full_experiment_seconds["searches"] / 3600:.2f} h of training, plus the Gaussian-process fits')
    if args.json:
        print(json.dumps({'device': name, 'images': args.images, 'authors_pipeline': rates[0],
                          'one_model': rates[1], 'population': dict(zip(sizes, rates[2:])),
                          'full_experiment_seconds': full_experiment_seconds}))


if __name__ == '__main__':
    main()
