"""How fast the paper's CIFAR-10 network (or with --dataset the 1x28x28 network of MNIST, Fashion-MNIST and digits)
trains here, in model-epochs per second (one network trained for one epoch is one model-epoch), three ways on the same
synthetic images of the dataset's shape:

  (a) the authors' pipeline: a Dataset that turns each image into a tensor with ToTensor when it is read,
      through a DataLoader, one network at a time;
  (b) this project's one-model path: the images already tensors on the device, batches are slices;
  (c) the population path: K networks trained in lockstep as one batched computation.

It prints each figure, the floating-point rate it reaches (GFLOP/s) and its fraction of the device's float32
matrix-product rate (a 2048 x 2048 torch.mm, measured in the same run: the ceiling of convolutions), its ratio to
(a), and the wall time that rate gives the paper's full experiment (2 methods x 10 repetitions x 25 evaluations x
50 epochs = 25,000 model-epochs of the dataset's training split, 40,000 CIFAR-10 images, scaled from the --images
measured), and that of the searches as test.py runs them on a GPU. (a) runs in a process of its own, with the C
library's memory allocator as the
authors had it (network.keep_freed_memory changes it for the whole process). --json adds, as the last line, one
JSON object with the same figures.

--experiment instead runs the paper's experiment end to end, exactly as test.py runs it (both searches, their
budgets, the results file, the Gaussian-process fits), on synthetic images of the dataset's shape (--images for
training, and for validation and test each as many as the dataset's validation split in that proportion: 40,000 /
10,000 / 10,000 for CIFAR-10) in a temporary
folder, and prints its wall time split into training, scoring, the optimizers' proposals and the rest. The
networks learn nothing from random labels, but each costs what a real one costs. --epochs and --repetitions
shrink it.

--profile K prints torch.profiler's table of the operations (and on a GPU the kernels) of one training step of a
population of K.

--proposals TABLE times a fixed study on benchmark table TABLE (its settings; the eight methods, --repetitions 20,
--evaluations 49) run by test.py in a temporary folder at each of --processes (1 and 2: its --proposal-processes),
side by side in one run: each one's wall time, its speed-up over the first, whether every run wrote the same CSV,
and how the first run's proposals split between the methods. Nothing trains on a table: its time is the searches'.

--fidelity FILE measures how closely benchmark table FILE (a finished grid run with curves, see table.py) answers
for real training: --points seeded random points of its box (not grid points) are trained for real with its
settings, and their validation losses at its epochs are set against the table's answers (root-mean-square error,
Spearman's rank correlation), beside the same figures between two of its replicas over its grid points: the
training noise, which no table can beat.

--noise TABLE prints the training noise that benchmark table TABLE measures (one network's deviation from its grid
point's mean: robust and root-mean-square width, skewness, by quarter of the grid points' mean loss) and what its
answers between grid points carry of it (--points seeded random points, each answered for many seeds). With --real
FILE [FILE ...], results of real training at the table's settings, it sets the real rows' final validation losses and
the table's answers at the same points and seeds against the table's expectation there: their quantiles (rows whose
expectation lies in the grid's lower half of mean losses, where searches end) and each method's mean best of its
searches, real and answered (at the rows' own seeds, and averaged over NOISE_STREAMS noise streams, with the standard
error of the streams' mean difference from real training over the searches): the answer rule's bias, apart from where
the searches went. Last, the rule by construction at the same points (rule_by_construction): on SYNTHETIC_TABLES
tables of known truth, with the table's own noise, what the rule gains or loses when nothing else can differ.

A flag that the chosen mode does not use is refused (but --batch-size, --device and --seed, which every mode
accepts; --proposals ignores all three, --fidelity the batch size, the table's), as is any bad value, in one line
with exit status 2; Ctrl-C, SIGTERM and SIGHUP end it with one line (bench.py writes no file).
"""
import stopping  # imports only the standard library: a stop while the libraries below load is one line

if __name__ == '__main__':
    stopping.exit_while_starting('nothing was written')

import argparse
import concurrent.futures
import contextlib
import dataclasses
import io
import json
import math
import multiprocessing
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import stats
from torchvision import transforms

import command_line
import dataset_management
import local_training
import network
import proposals
import report
import results
import searches
import table
import test  # the experiment whose training time is estimated

DATASET = 'cifar10'  # the network and the synthetic images' shape: the dataset's (--dataset)
IMAGES = None  # synthetic images per measured epoch (--images); None: the dataset's training split, 40,000 for CIFAR-10
# Population sizes measured (--populations), by device: on CPU around test.py's default, on a GPU test.py's (SCHEDULES)
POPULATIONS = {'cpu': (1, 5, 10, 20, 50), 'cuda': (10, 20, 250)}
MATMUL_SIDE = 2048  # the matrix product that gives the device's float32 rate, the best of MATMUL_REPEATS
MATMUL_REPEATS = 5
BATCH_SIZE = 64  # as in the paper
SEED = 0  # seeds the synthetic images
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
FULL_EXPERIMENT = len(test.METHODS) * test.REPETITIONS * test.EVALUATIONS * test.EPOCHS  # model-epochs
# How test.py trains its default methods (one Bayesian, one Sobol) on a GPU, with each --schedule: {population size:
# the share of the experiment's model-epochs trained in populations of that size}. 'after': rounds of the 10
# Bayesian repetitions, then the 250 Sobol points as one population; 'rounds': 25 rounds of 10 Bayesian and 10 Sobol
GPU_POPULATION = test.default_population('cuda')
SCHEDULE_POPULATIONS = {'after': {min(GPU_POPULATION, test.REPETITIONS): 0.5,
                                  min(GPU_POPULATION, test.REPETITIONS * test.EVALUATIONS): 0.5},
                        'rounds': {min(GPU_POPULATION, 2 * test.REPETITIONS): 1.0}}
EPOCHS = test.EPOCHS  # --experiment: training epochs of every network (test.py's)
REPETITIONS = test.REPETITIONS  # --experiment: repetitions of each search (test.py's)
LEARNING_RATE_RANGE = test.LEARNING_RATE_BOUNDS  # the population's members spread over it
WEIGHT_DECAY = 0.0005
# The flags each mode uses besides --batch-size, --device and --seed: any other given is refused
MODE_FLAGS = {'rates': ('dataset', 'images', 'populations', 'json'), 'profile': ('dataset', 'profile'),
              'experiment': ('experiment', 'dataset', 'images', 'epochs', 'repetitions', 'schedule', 'json'),
              'proposals': ('proposals', 'repetitions', 'evaluations', 'processes', 'json'),
              'fidelity': ('fidelity', 'points', 'data_dir', 'json'), 'noise': ('noise', 'points', 'real')}
PROPOSAL_REPETITIONS = 20  # --proposals: the fixed study's repetitions (of every method)
PROPOSAL_EVALUATIONS = 49  # --proposals: the fixed study's evaluations per search (a square, for grid)
PROPOSAL_PROCESSES = (1, 2)  # --proposals: test.py's --proposal-processes, each timed
FIDELITY_POINTS = 20  # --fidelity: random points trained for real
# --fidelity's points are those of random search in repetition 0, which no run has: seeds no table or study uses
FIDELITY_REPETITION = 0
DATA_DIR = test.DATA_DIR  # --fidelity: where the table's dataset is
NOISE_SEEDS = 200  # --noise: seeds (networks) answered at each random point
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)  # --noise --real: of (loss - expected)
# --noise --real: the table's best of each real search is also averaged over this many noise streams (the rows' seeds,
# then seeds moved by multiples of NOISE_STREAM_STRIDE), so that the rule's bias is not one stream's luck
NOISE_STREAMS = 20
NOISE_STREAM_STRIDE = 1_000_003
# --noise --real: synthetic tables of known truth (the table's grid means) on which the answer rule is checked at the
# real searches' points (see rule_by_construction)
SYNTHETIC_TABLES = 20


class AuthorsDataset(torch.utils.data.Dataset):
    """Images as torchvision's CIFAR10 and MNIST keep them (uint8, H x W x C or H x W), made a PIL image and then a
    tensor by ToTensor each time one is read."""

    def __init__(self, images, labels):
        self.images, self.labels, self.to_tensor = images, labels, transforms.ToTensor()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.to_tensor(Image.fromarray(self.images[index])), self.labels[index]


def training_split_size(dataset):
    """The images one model-epoch of the paper's experiment trains on: the dataset's training split (40,000 for
    CIFAR-10, 50,000 for MNIST and Fashion-MNIST)."""
    return dataset_management.DATASETS[dataset].training_set_size - dataset_management.DATASETS[dataset].validation_size


def held_out_images(args):
    """--experiment's validation and test images, each: the dataset's validation split in proportion to --images
    (10,000 for 40,000 CIFAR-10 images, as in the paper)."""
    return args.images * dataset_management.DATASETS[args.dataset].validation_size // training_split_size(args.dataset)


def authors_pipeline(images, labels, *, batch_size, device):
    """(a): a function that trains a fresh network for one epoch on the first `count` images and returns it."""
    input_shape = AuthorsDataset(images, labels)[0][0].shape

    def train_epoch(count):
        loader = torch.utils.data.DataLoader(AuthorsDataset(images[:count], labels[:count]), batch_size=batch_size)
        model = network.build_network(input_shape=input_shape, seed=0, device=device)
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
        model = network.build_network(input_shape=split.images.shape[1:], seed=0, device=split.images.device)
        network.train(model, split.images[:count], split.labels[:count], learning_rate=0.01,
                      weight_decay=WEIGHT_DECAY, epochs=1, batch_size=batch_size)
        return model
    return train_epoch


def population_path(split, members, *, batch_size):
    """(c): a function that trains a fresh population (seeds 0..members-1) for one epoch on the first `count`
    images and returns its parameters."""
    learning_rates = np.linspace(*LEARNING_RATE_RANGE, members).tolist()

    def train_epoch(count):
        parameters = network.build_population(input_shape=split.images.shape[1:], seeds=range(members),
                                              device=split.images.device)
        network.train_population(parameters, split.images[:count], split.labels[:count],
                                 learning_rates=learning_rates, weight_decays=[WEIGHT_DECAY] * members, epochs=1,
                                 batch_size=batch_size)
        return parameters
    return train_epoch


def authors_rate(count, *, input_shape, seed, batch_size, device):
    """(a)'s model-epochs per second on `count` synthetic images of `input_shape` made from `seed`, in this process."""
    images, labels = synthetic_images(count, input_shape, np.random.default_rng(seed))
    return model_epochs_per_second(authors_pipeline(images, labels, batch_size=batch_size, device=device),
                                   images=count, members=1, batch_size=batch_size, device=device)


def in_own_process(function, *args, **kwargs):
    """function(*args, **kwargs) run in a fresh Python process (spawned, so nothing of this one is inherited)."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as pool:
        return pool.submit(function, *args, **kwargs).result()


def matmul_gflops(device):
    """The device's float32 matrix-product rate in GFLOP/s: the best of MATMUL_REPEATS MATMUL_SIDE-square torch.mm
    (in IEEE FP32 on a GPU, as network.py sets it)."""
    a, b = (torch.rand(MATMUL_SIDE, MATMUL_SIDE, device=device) for _ in range(2))
    torch.mm(a, b)
    synchronize(device)
    best = math.inf
    for _ in range(MATMUL_REPEATS):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * MATMUL_SIDE ** 3 / best / 1e9


def training_flops_per_image(input_shape):
    """Floating-point operations of one training step, per image: 2 per multiply-add of the convolutions and the
    linear layer, forward, then backward for every layer's weights and for the inputs of all but the first (the
    images need no gradient). Pooling, ReLU, the loss and the update are left out (under 1%)."""
    model, multiply_adds = network.LeNet5(input_shape), []
    for layer in (model.conv1, model.conv2, model.fc):  # each output is one filter's (row's) dot product
        layer.register_forward_hook(lambda layer, _, output: multiply_adds.append(output.numel() *
                                                                                 layer.weight[0].numel()))
    model(torch.zeros(1, *input_shape))
    return 2 * (3 * sum(multiply_adds) - multiply_adds[0])


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


def synthetic_images(count, input_shape, generator):
    """`count` random images of `input_shape` (C x H x W) as torchvision keeps them (uint8, H x W x C, or H x W for
    one channel) and random labels."""
    channels, height, width = input_shape
    size = (count, height, width) + ((channels,) if channels > 1 else ())
    return (generator.integers(0, 256, size=size, dtype=np.uint8), generator.integers(0, 10, size=count).tolist())


def as_split(images, labels, device):
    """Synthetic images and labels as a Split on `device`, as dataset_management loads a dataset."""
    return dataset_management.to_device(dataset_management.to_split(torch.from_numpy(images), torch.tensor(labels)),
                                        device)


def measure_rates(args, device, name):
    """The three paths' model-epochs per second, how close each comes to the matrix-product rate, and the full
    experiment's training time they give."""
    input_shape = dataset_management.DATASETS[args.dataset].input_shape
    print(f'{args.images} synthetic {args.dataset}-shaped images ({" x ".join(map(str, input_shape))}), batch '
          f'{args.batch_size}, on {name}', flush=True)
    images, labels = synthetic_images(args.images, input_shape, np.random.default_rng(args.seed))
    split = as_split(images, labels, device)

    def here(train_epoch, members):
        return lambda: model_epochs_per_second(train_epoch, images=args.images, members=members,
                                               batch_size=args.batch_size, device=device)
    paths = [('authors_pipeline', 1, lambda: in_own_process(authors_rate, args.images, input_shape=input_shape,
                                                            seed=args.seed, batch_size=args.batch_size,
                                                            device=device)),
             ('one_model', 1, here(one_model_path(split, batch_size=args.batch_size), 1))]
    paths += [('population', members, here(population_path(split, members, batch_size=args.batch_size), members))
              for members in args.populations]
    rates = []
    for path, members, measure in paths:
        rates.append(measure())
        print(f'{path} K={members}: {rates[-1]:.3f} model-epochs/s', flush=True)
    matmul = matmul_gflops(device)
    print(f'matrix product ({MATMUL_SIDE} x {MATMUL_SIDE}): {matmul:.1f} GFLOP/s', flush=True)

    paper_images = training_split_size(args.dataset)
    seconds = [FULL_EXPERIMENT * paper_images / args.images / rate for rate in rates]  # the paper's experiment
    steps = network.batch_count(range(args.images), args.batch_size)  # per epoch
    step_milliseconds = [1000 * members / rate / steps for (_, members, _), rate in zip(paths, rates)]
    flops_per_epoch = args.images * training_flops_per_image(input_shape)
    gflops = [rate * flops_per_epoch / 1e9 for rate in rates]
    columns = [('Path', '{}'), ('K', '{:d}'), ('Model-epochs/s', '{:.3f}'), ('ms/step', '{:.3f}'),
               ('GFLOP/s', '{:.1f}'), ('Of matmul', '{:.0%}'), ('x Authors', '{:.1f}'),
               ('Full experiment (h)', '{:.2f}')]
    figures = [(path, members, rate, step, flops, flops / matmul, rate / rates[0], time / 3600)
               for (path, members, _), rate, step, flops, time in zip(paths, rates, step_milliseconds, gflops, seconds)]
    report.print_table(report.Table(f'Training speed on {name}: {args.images} {args.dataset}-shaped images per '
                                    f'epoch, batch {args.batch_size}; the full experiment is {FULL_EXPERIMENT:,} '
                                    f'model-epochs of {paper_images:,} images; matmul {matmul:.1f} GFLOP/s', columns,
                                    figures))
    sizes = [str(members) for _, members, _ in paths[2:]]

    def by_path(values):
        return {'authors_pipeline': values[0], 'one_model': values[1], 'population': dict(zip(sizes, values[2:]))}
    full_experiment_seconds = by_path(seconds)
    population = full_experiment_seconds['population']
    if device.type == 'cuda' and all(str(size) in sizes for shares in SCHEDULE_POPULATIONS.values()
                                     for size in shares):
        full_experiment_seconds['searches'] = {schedule: sum(share * population[str(size)]
                                                             for size, share in shares.items())
                                               for schedule, shares in SCHEDULE_POPULATIONS.items()}
        for schedule, training_seconds in full_experiment_seconds['searches'].items():
            print(f'The full experiment as test.py --schedule {schedule} runs it on a GPU: '
                  f'{training_seconds / 3600:.2f} h of training, plus the Gaussian-process proposals')
    if args.json:
        print(json.dumps({'device': name, 'dataset': args.dataset, 'images': args.images, **by_path(rates),
                          'population_step_milliseconds': dict(zip(sizes, step_milliseconds[2:])),
                          'full_experiment_seconds': full_experiment_seconds, 'matmul_gflops': matmul,
                          'utilisation': by_path([flops / matmul for flops in gflops])}))


def profile_step(args, device, name):
    """--profile K: torch.profiler's table of one SGD step of a population of K, run as plain PyTorch after three
    warm-up steps (on a GPU, training replays the same kernels as one CUDA graph)."""
    members = args.profile
    input_shape = dataset_management.DATASETS[args.dataset].input_shape
    batch = as_split(*synthetic_images(args.batch_size, input_shape, np.random.default_rng(args.seed)), device)
    parameters = network.build_population(input_shape=input_shape, seeds=range(members), device=device)
    optimizer = network.PopulationSGD(parameters, learning_rates=np.linspace(*LEARNING_RATE_RANGE, members).tolist(),
                                      weight_decays=[WEIGHT_DECAY] * members)
    for _ in range(3):
        optimizer.step(*batch)
    synchronize(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        optimizer.step(*batch)
        synchronize(device)
    print(f'One SGD step of a population of {members} {args.dataset} networks on {name}, batch {args.batch_size}:')
    print(profiler.key_averages().table(sort_by=f'{device.type}_time_total', row_limit=30))


@contextlib.contextmanager
def timed(owner, name, seconds, part):
    """While the block runs, add the wall time of every call of owner.name to seconds[part]."""
    original = getattr(owner, name)

    def timed_call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[part] += time.perf_counter() - start
    setattr(owner, name, timed_call)
    try:
        yield
    finally:
        setattr(owner, name, original)


class ExperimentStopped(BaseException):
    """A stop signal during --experiment. Not a KeyboardInterrupt, which test.main would answer by offering to resume
    a results file that is in a temporary folder about to be removed."""


def run_experiment(args, device, name):
    """--experiment: test.py's experiment end to end on synthetic splits of the dataset's shape, in a temporary folder;
    print its wall time split into training, scoring (the validation and test passes), the optimizers' proposals
    (Gaussian-process fits and acquisition) and the rest, and each part at test.py's epochs (only training grows
    with them)."""
    generator = np.random.default_rng(args.seed)
    sizes = (args.images, held_out_images(args), held_out_images(args))  # 40,000 / 10,000 / 10,000 for CIFAR-10
    input_shape = dataset_management.DATASETS[args.dataset].input_shape
    splits = dataset_management.Splits(*(as_split(*synthetic_images(size, input_shape, generator), device)
                                         for size in sizes))
    seconds = {'training': 0.0, 'scoring': 0.0, 'proposals': 0.0}
    with stopping.handlers_kept(), tempfile.TemporaryDirectory() as folder, \
            timed(local_training, 'train_networks', seconds, 'training'), \
            timed(network, 'evaluate', seconds, 'scoring'), timed(network, 'evaluate_population', seconds, 'scoring'), \
            timed(searches.BayesOptSearch, 'ask', seconds, 'proposals'), \
            timed(searches.OptunaSearch, 'ask', seconds, 'proposals'):
        stopping.raise_when_stopped(ExperimentStopped)
        start = time.perf_counter()
        test.main(['--dataset', args.dataset, '--epochs', str(args.epochs), '--repetitions', str(args.repetitions),
                   '--device', args.device,
                   '--batch-size', str(args.batch_size), '--schedule', args.schedule,
                   '--output', os.path.join(folder, 'results.csv')], splits=splits)
        seconds['total'] = time.perf_counter() - start
    seconds['training'] -= seconds['scoring']  # train_networks scores the networks too
    seconds['rest'] = seconds['total'] - seconds['training'] - seconds['scoring'] - seconds['proposals']
    at_paper_epochs = {part: value * (test.EPOCHS / args.epochs if part == 'training' else 1)
                       for part, value in seconds.items() if part != 'total'}
    at_paper_epochs['total'] = sum(at_paper_epochs.values())
    parts = ('training', 'scoring', 'proposals', 'rest', 'total')
    title = (f'End to end on {name}: test.py with --epochs {args.epochs} --repetitions {args.repetitions} '
             f'--schedule {args.schedule} on {" / ".join(f"{size:,}" for size in sizes)} synthetic {args.dataset}-'
             'shaped images')
    columns = [('Part', '{}'), ('Seconds', '{:.1f}'), (f'At {test.EPOCHS} epochs', '{:.1f}')]
    report.print_table(report.Table(title, columns, [(part, seconds[part], at_paper_epochs[part]) for part in parts]))
    if args.json:
        print(json.dumps({'device': name, 'dataset': args.dataset, 'split_images': sizes, 'epochs': args.epochs,
                          'repetitions': args.repetitions, 'schedule': args.schedule,
                          'seconds': {part: seconds[part] for part in parts}, 'paper_epochs': test.EPOCHS,
                          'seconds_at_paper_epochs': at_paper_epochs}))


def time_proposals(parser, args):
    """--proposals TABLE: the fixed study on the table at each number of processes (see the module's docstring)."""
    try:
        settings = table.load(args.proposals).settings
    except ValueError as error:
        parser.error(f'--proposals: {error}')
    study = ['--dataset', settings.dataset, '--validation-size', str(settings.validation_size), '--training-size',
             str(settings.training_size), '--epochs', str(settings.epochs), '--batch-size', str(settings.batch_size),
             '--learning-rate-bounds', *map(str, settings.learning_rate_bounds), '--weight-decay-bounds',
             *map(str, settings.weight_decay_bounds), '--lr-scale', settings.lr_scale, '--method',
             ','.join(searches.METHODS), '--evaluations', str(args.evaluations), '--repetitions', str(args.repetitions),
             '--table', os.path.abspath(args.proposals), '--quiet']
    seconds, by_method, written = [], {}, []
    with tempfile.TemporaryDirectory() as folder:
        for count in args.processes:
            output = os.path.join(folder, f'processes-{count}.csv')
            with contextlib.ExitStack() as stack:
                if not by_method:  # the first run: each search's asks timed
                    stack.enter_context(timed_asks(by_method))
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
                start = time.perf_counter()
                test.main([*study, '--proposal-processes', str(count), '--output', output])
                seconds.append(time.perf_counter() - start)
            with open(output) as file:
                written.append(file.read())
    same = all(text == written[0] for text in written)
    report.print_table(report.Table(
        f'The eight methods on {args.proposals}, {args.repetitions} repetitions of {args.evaluations} evaluations: '
        f'wall time by the processes proposing (the same CSV each time: {"yes" if same else "NO"})',
        [('Processes', '{:d}'), ('Seconds', '{:.1f}'), ('Speed-up', '{:.2f}')],
        [(count, spent, seconds[0] / spent) for count, spent in zip(args.processes, seconds)]))
    total = sum(by_method.values())
    report.print_table(report.Table(
        f'Where the time of the proposals goes ({args.processes[0]} process{"es" * (args.processes[0] > 1)}, '
        f'{total:.1f} s of asks in all)', [('Method', '{}'), ('Seconds', '{:.1f}'), ('Share', '{:.1%}')],
        [(method, spent, spent / total) for method, spent in by_method.items()]))
    if args.json:
        print(json.dumps({'table': args.proposals, 'processes': list(args.processes), 'seconds': seconds,
                          'same_csv': same, 'ask_seconds': by_method}))


@contextlib.contextmanager
def timed_asks(by_method):
    """While it lasts, the searches proposing in this process time each search's asks, summed by method into
    by_method (their points unchanged)."""
    def ask(here):
        points = []
        with proposals.one_thread():
            for method, _, search in here.adaptive:
                start = time.perf_counter()
                points.append(search.ask())
                by_method[method] = by_method.get(method, 0.0) + time.perf_counter() - start
        return points
    original = proposals.Here.ask
    proposals.Here.ask = ask
    try:
        yield
    finally:
        proposals.Here.ask = original


def agreement(first, second):
    """How closely two lists of validation losses agree: (pairs both finite, root-mean-square difference, Spearman's
    rank correlation over them, pairs of which exactly one diverged)."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    finite = np.isfinite(first) & np.isfinite(second)
    rmse = float(np.sqrt(np.mean((first[finite] - second[finite]) ** 2))) if finite.any() else math.nan
    spearman = float(stats.spearmanr(first[finite], second[finite]).statistic) if finite.sum() > 2 else math.nan
    return int(finite.sum()), rmse, spearman, int((np.isfinite(first) != np.isfinite(second)).sum())


def measure_fidelity(parser, args, name):
    """--fidelity FILE: the table's answers against real training at random points, beside its replicas' agreement
    (see the module's docstring)."""
    path = args.fidelity
    try:
        answers = table.load(path)
    except (ValueError, OSError, EOFError) as error:
        parser.error(f'--fidelity: {error}')
    grid_args = dataclasses.replace(answers.settings, seed=args.seed)  # the table's settings, but the seed
    points = searches.random_points(grid_args.box(), evaluations=args.points,
                                    seed=searches.seed_for(args.seed, FIDELITY_REPETITION))
    real_args = argparse.Namespace(**{**vars(grid_args), 'device': args.device, 'data_dir': args.data_dir,
                                      'population': args.points, 'curves': False})  # and these
    rows = grid_args.rows_of('random', FIDELITY_REPETITION, points)
    splits = command_line.load_data(parser, real_args)
    start = time.perf_counter()
    real = [scores['val_loss'] for scores in local_training.train_networks(rows, splits, real_args, progress=False)]
    seconds = time.perf_counter() - start
    interpolated = [answers.scores(row)['val_loss'] for row in rows]
    final = answers.curves[:, :, :, -1, 0]  # replica x grid point: the validation loss at the table's epochs
    figures = {'table_vs_real': agreement(interpolated, real), 'replica_vs_replica': agreement(final[0], final[1])}
    columns = [('Comparison', '{}'), ('Pairs', '{:d}'), ('RMSE', '{:.4f}'), ('Spearman', '{:.3f}'),
               ('One diverged', '{:d}')]
    report.print_table(report.Table(
        f'Fidelity of {path} ({grid_args.dataset}, {grid_args.epochs} epochs, {answers.replicas} replicas of a '
        f'{math.isqrt(grid_args.evaluations)} x {math.isqrt(grid_args.evaluations)} grid): validation losses, '
        f'{len(rows)} random points trained for real on {name} in {seconds:.0f} s', columns,
        [('table vs real training (random points)', *figures['table_vs_real']),
         ('replica 1 vs replica 2 (grid points: the noise)', *figures['replica_vs_replica'])]))
    if args.json:
        print(json.dumps({'file': path, 'points': len(rows), 'seconds': seconds,
                          **{key: dict(zip(('pairs', 'rmse', 'spearman', 'one_diverged'), value))
                             for key, value in figures.items()}}))


def measure_noise(parser, args):
    """--noise TABLE [--real FILE ...]: the training noise the table measures and carries, and set against real
    training (see the module's docstring)."""
    try:
        answers = table.load(args.noise)
        runs = [results.load_run(path) for path in args.real or []]
        for run in runs:
            table.TableTraining(answers, run.settings)  # refuses a run of other settings
    except (ValueError, OSError, EOFError) as error:
        parser.error(f'--noise: {error}')
    replicas, epochs = answers.replicas, answers.curves.shape[3]
    deviations = answers.donated[..., 0]
    quarters = np.array_split(np.argsort(answers.levels[answers.donors], kind='stable'), 4)
    points = answers.settings.rows_of('random', FIDELITY_REPETITION, searches.random_points(
        answers.settings.box(), evaluations=args.points, seed=searches.seed_for(args.seed, FIDELITY_REPETITION)))
    answered = np.array([answers.curve(point['learning_rate'], point['weight_decay'], seed)[-1, 0]
                         - answers.expected(point['learning_rate'], point['weight_decay'])[-1, 0]
                         for point in points for seed in range(NOISE_SEEDS)])
    kept = (replicas - 2) / math.sqrt(replicas * (replicas - 1))

    def widths(final):
        return (1.4826 * np.median(np.abs(final)), np.sqrt(np.mean(final ** 2)), stats.skew(final.ravel()))
    report.print_table(report.Table(
        f'Training noise of {args.noise}: {replicas} replicas of {answers.curves.shape[1]} x '
        f'{answers.curves.shape[2]} grid points, {len(answers.donors) * (replicas - 1)} degrees of freedom where no '
        f'replica diverged ({int((~answers.trained).sum())} diverged networks); one network\'s final validation '
        f'loss minus its grid point\'s mean. Correlation of a deviation at half the epochs with the last: '
        f'{np.corrcoef(deviations[:, :, epochs // 2 - 1].ravel(), deviations[:, :, -1].ravel())[0, 1]:.2f}. '
        f'A deviation from the mean of {replicas} keeps {kept:.2f} of one network\'s skewness'
        + (f' (so one network\'s: {stats.skew(deviations[..., -1].ravel()) / kept:.2f})' if kept else ''),
        [('Grid points', '{}'), ('Count', '{:d}'), ('Robust width', '{:.4f}'), ('RMS', '{:.4f}'),
         ('Skewness', '{:.2f}')],
        [('all', len(answers.donors), *widths(deviations[..., -1])),
         *((f'loss quarter {number} (mean {answers.levels[answers.donors][quarter].mean():.3f})', len(quarter),
            *widths(deviations[:, quarter, -1])) for number, quarter in enumerate(quarters, 1)),
         (f'the answers at {len(points)} random points x {NOISE_SEEDS} seeds', len(answered),
          *widths(answered[np.isfinite(answered)]))]))
    if runs:
        compare_noise_with_real(answers, runs)


def compare_noise_with_real(answers, runs):
    """--noise with --real: real rows and the table's answers at their points and seeds, against the expectation."""
    lower_half = np.median(answers.levels[answers.donors])
    residuals, best, searches_by_method = {}, {}, {}
    for run in runs:
        for (method, _), rows in report.rows_by_search(run.rows).items():
            rows = [row for row in rows if row['repeat_of'] is None]
            searches_by_method.setdefault(method, []).append(rows)
            answered = [answers.scores(row)['val_loss'] for row in rows]
            for row, answer in zip(rows, answered):
                expected = answers.expected(row['learning_rate'], row['weight_decay'])[row['epochs'] - 1, 0]
                if expected <= lower_half and math.isfinite(row['val_loss'] + answer):
                    residuals.setdefault(method, []).append((row['val_loss'] - expected, answer - expected))
            streams = [np.nanmin([answers.scores({**row, 'seed': row['seed'] + stream * NOISE_STREAM_STRIDE})
                                  ['val_loss'] for row in rows]) for stream in range(1, NOISE_STREAMS)]
            real_best, own_best = np.nanmin([row['val_loss'] for row in rows]), np.nanmin(answered)
            best.setdefault(method, []).append((real_best, own_best, np.mean([own_best, *streams])))
    columns = [('Rows', '{}'), ('Count', '{:d}'), *((f'{quantile:.0%}', '{:+.4f}') for quantile in QUANTILES),
               ('Std', '{:.4f}'), ('Skewness', '{:.2f}')]
    report.print_table(report.Table(
        f'Loss minus the table\'s expectation at the real rows\' points and seeds (expectation at most '
        f'{lower_half:.3f}, the grid\'s median)', columns,
        [(f'{method}, {source}', len(values), *np.quantile(values, QUANTILES), np.std(values), stats.skew(values))
         for method, pairs in residuals.items() for source, values in zip(('real', 'table'), np.array(pairs).T)]))
    lines = []
    for method, bests in best.items():  # per search: (real, answered at its seeds, mean over the noise streams)
        bests = np.array(bests)
        real, own, streams = bests.mean(axis=0)
        error = np.std(bests[:, 2] - bests[:, 0], ddof=1) / math.sqrt(len(bests)) if len(bests) > 1 else math.nan
        lines.append((method, len(bests), real, own, own - real, streams - real, error))
    report.print_table(report.Table(
        f'Mean best validation loss of each search at the real searches\' own points: real training, the table\'s '
        f'answers at their seeds, and over {NOISE_STREAMS} noise streams (s.e.: of the streams\' difference, over the '
        f'searches)', [('Method', '{}'), ('Searches', '{:d}'), ('Real', '{:.4f}'), ('Table', '{:.4f}'),
                       ('Table - real', '{:+.4f}'), ('Streams - real', '{:+.4f}'), ('s.e.', '{:.4f}')], lines))
    constructed = {method: rule_by_construction(answers, searches) for method, searches in searches_by_method.items()}
    report.print_table(report.Table(
        f'The answer rule by construction, at the same points: on {SYNTHETIC_TABLES} synthetic tables whose truth is '
        f'the table\'s grid means (interpolated as its expectation), each replica that truth plus one donor\'s noise, '
        f'each real network that truth plus another\'s: the mean best of each search, table minus real',
        [('Method', '{}'), ('Searches', '{:d}'), ('Table - real', '{:+.4f}'), ('s.e.', '{:.4f}')],
        [(method, len(searches_by_method[method]), np.mean(differences),
          np.std(differences, ddof=1) / math.sqrt(len(differences))) for method, differences in constructed.items()]))


def rule_by_construction(answers, searches):
    """Per synthetic table and search (SYNTHETIC_TABLES x len(searches) values): the best validation loss the answer
    rule gives at the searches' points minus the best of real networks there, where the truth is known: the table's
    grid means, interpolated as the table's expectation is. A synthetic replica is the truth plus one network's noise
    drawn as the rule draws it (a donor's deviation among the NOISE_POOL grid points of nearest mean loss), and so is
    a real network; both held, as the rule's answers are, within the range the table's replicas span there
    (Table.bounded), since a donor of the same mean loss may come from where the replicas disagree far more. A rule
    that neither gains nor loses by construction answers 0 for every method."""
    trained = answers.trained.any(axis=0)
    truth = np.where(trained[..., None, None], answers.trained_means, answers.curves[0])
    known = table.Table(answers.axes, np.stack([truth, truth]), log_learning_rate=answers.log_learning_rate)

    def network(curve, rows, columns, draw):  # one network of this expected curve, at a point of these grid points
        pool = answers.donor_pool(curve[-1, 0])
        noise = answers.donated[draw.integers(answers.replicas), pool[draw.integers(len(pool))]]
        return answers.bounded(curve + noise, rows, columns)
    differences = []
    for number in range(SYNTHETIC_TABLES):
        draw = np.random.default_rng(number)
        synthetic = table.Table(answers.axes, np.stack([
            [[network(truth[i, j], [i], [j], draw) if trained[i, j] else truth[i, j] for j in range(truth.shape[1])]
             for i in range(truth.shape[0])] for _ in range(answers.replicas)]),
            log_learning_rate=answers.log_learning_rate)
        for rows in searches:
            real = [network(known.expected(row['learning_rate'], row['weight_decay']),
                            *answers.corners(row['learning_rate'], row['weight_decay'])[:2], draw)[row['epochs'] - 1, 0]
                    for row in rows]
            answered = [synthetic.scores({**row, 'seed': row['seed'] + number * NOISE_STREAM_STRIDE})['val_loss']
                        for row in rows]
            differences.append(np.nanmin(answered) - np.nanmin(real))
    return differences


def build_parser():
    parser = command_line.ArgumentParser(description=__doc__, formatter_class=command_line.HelpFormatter)
    parser.add_argument('--dataset', choices=dataset_management.DATASETS,
                        help=f"the network and the synthetic images' shape: the dataset's (None: {DATASET})")
    parser.add_argument('--images', type=int, help='synthetic training images per epoch (None: the training split of '
                                                   'the dataset, 40000 for cifar10)')
    parser.add_argument('--batch-size', type=int, default=BATCH_SIZE, help='as in the paper')
    parser.add_argument('--populations', type=int, nargs='+', metavar='K',
                        help=f'population sizes to measure (None: {POPULATIONS["cpu"]} on CPU, '
                             f'{POPULATIONS["cuda"]} on a GPU)')
    command_line.add_device_argument(parser, DEVICE)
    parser.add_argument('--seed', type=int, default=SEED, help='seeds the synthetic images')
    parser.add_argument('--json', action='store_true', help='end with one line of JSON holding every figure')
    what = parser.add_mutually_exclusive_group()  # instead of the three paths' speeds
    what.add_argument('--profile', type=int, metavar='K',
                      help="print torch.profiler's table of one training step of a population of K")
    what.add_argument('--experiment', action='store_true',
                      help="run test.py's experiment end to end on synthetic data and time its parts")
    what.add_argument('--proposals', metavar='TABLE',
                      help='time a fixed study of the eight methods on benchmark table TABLE at each number of '
                           '--processes proposing, side by side')
    what.add_argument('--fidelity', metavar='FILE',
                      help='how closely benchmark table FILE answers for real training at random points, beside '
                           'its replicas\' agreement (the training noise)')
    what.add_argument('--noise', metavar='TABLE',
                      help='the training noise that benchmark table TABLE measures and its answers carry')
    parser.add_argument('--real', nargs='+', metavar='FILE',
                        help='--noise: results of real training at the table\'s settings, set against its answers')
    parser.add_argument('--points', type=int, help=f'--fidelity: random points trained for real; --noise: random '
                                                   f'points answered (None: {FIDELITY_POINTS})')
    parser.add_argument('--data-dir', help=f"--fidelity: where the table's dataset is (None: {DATA_DIR})")
    parser.add_argument('--epochs', type=int, help=f'--experiment: training epochs per network (None: {EPOCHS})')
    parser.add_argument('--repetitions', type=int,
                        help=f'--experiment: repetitions per search (None: {REPETITIONS})')
    parser.add_argument('--evaluations', type=int, help=f'--proposals: evaluations per search (None: '
                                                        f'{PROPOSAL_EVALUATIONS})')
    parser.add_argument('--processes', type=int, nargs='+', metavar='N',
                        help=f"--proposals: test.py's --proposal-processes, each timed (None: "
                             f"{' '.join(map(str, PROPOSAL_PROCESSES))})")
    parser.add_argument('--schedule', choices=test.SCHEDULE_NAMES,
                        help=f"--experiment: test.py's --schedule (None: {test.SCHEDULE})")
    return parser


def check_flags_of_mode(parser, args):
    """End with a one-line error for a flag the chosen mode would ignore; fill in the defaults of those it uses."""
    mode = ('profile' if args.profile is not None else 'experiment' if args.experiment else
            'proposals' if args.proposals is not None else 'fidelity' if args.fidelity is not None else
            'noise' if args.noise is not None else 'rates')
    for name in sorted({name for flags in MODE_FLAGS.values() for name in flags} - set(MODE_FLAGS[mode])):
        if getattr(args, name) is not None and getattr(args, name) is not False:
            without = {'rates': 'without --experiment'}.get(mode, f'with --{mode}')
            parser.error(f'{command_line.flag(name)} has no effect {without}')
    defaults = dict(dataset=DATASET, populations=POPULATIONS[torch.device(args.device).type], epochs=EPOCHS,
                    repetitions=PROPOSAL_REPETITIONS if mode == 'proposals' else REPETITIONS,
                    evaluations=PROPOSAL_EVALUATIONS, processes=PROPOSAL_PROCESSES, schedule=test.SCHEDULE,
                    points=FIDELITY_POINTS, data_dir=DATA_DIR)
    defaults['images'] = IMAGES or training_split_size(args.dataset or DATASET)
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    command_line.check_device(parser, args.device)
    device, name = torch.device(args.device), network.device_name(args.device)
    check_flags_of_mode(parser, args)
    command_line.check_positive_integers(parser, args, 'images', 'batch_size', 'populations', 'epochs', 'repetitions',
                                         'points', 'evaluations', 'processes', 'profile')
    if args.seed < 0:
        parser.error(f'--seed {args.seed} must be a non-negative integer')
    if args.experiment and held_out_images(args) < 1:
        parser.error(f'--images {args.images} is too few for --experiment on {args.dataset}: validation and test '
                     'take none of them in proportion')
    try:
        if args.proposals is not None:
            return time_proposals(parser, args)
        if args.fidelity is not None:
            return measure_fidelity(parser, args, name)
        if args.noise is not None:
            return measure_noise(parser, args)
        if args.profile is not None:
            return profile_step(args, device, name)
        (run_experiment if args.experiment else measure_rates)(args, device, name)
    except ExperimentStopped:
        parser.fail(stopping.exit_status(), 'nothing was kept: the experiment ran in a temporary folder, now removed',
                    kind='interrupted')
    except KeyboardInterrupt:  # Ctrl-C, or stopping.Stopped: SIGTERM, SIGHUP
        parser.fail(stopping.exit_status(), 'nothing was written (bench.py writes no file)', kind='interrupted')


if __name__ == '__main__':
    stopping.raise_when_stopped()
    main()
    stopping.default_when_stopped()
