"""The paper's LeNet-5-style CNN: build it, train it with SGD, evaluate it -> (loss, accuracy); and the same for
a population of K such networks with their own learning rates, weight decays and initial weights, trained in
lockstep on the same batches as one batched computation (the fast path of the searches).

`python network.py` prints the CIFAR-10 network's summary (the paper's Fig. 3);
`python network.py --learning-rate LR --weight-decay WD --seed S` trains that one configuration
and prints its validation and test loss and accuracy, the numbers of the matching results.csv row.
"""
import stopping  # imports only the standard library: a stop while the libraries below load is one line

if __name__ == '__main__':
    stopping.exit_while_starting('nothing was written')

import ctypes
import functools
import math
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchsummary import summary
from tqdm import tqdm

import command_line
import dataset_management

# The defaults of `python network.py`: test.py's, so that a results row retrains to its numbers with its seed
DATASET = 'cifar10'
DATA_DIR = 'data'
VALIDATION_SIZE = None  # None: the dataset's default (10,000; 360 for digits)
TRAINING_SIZE = None  # the first N training images; None: all
EPOCHS = 50
BATCH_SIZE = 64
SEED = 0  # the network's seed: a results row's seed column
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'

torch.backends.cudnn.deterministic = True  # cuDNN's default convolution kernels are not bitwise repeatable
# FP32 as on the authors' GPU, which had no TF32: PyTorch runs float32 cuDNN convolutions as TF32 by default on
# Ampere and newer GPUs (matrix products too, if asked to)
torch.backends.cudnn.conv.fp32_precision = 'ieee'
torch.backends.cuda.matmul.fp32_precision = 'ieee'
EPOCH_BAR_DELAY = 2  # seconds: with progress=True, a training that lasts longer shows a bar over its epochs
# The largest learning rate or weight decay: float32's largest, the networks' arithmetic (torch.optim.SGD refuses a
# larger one, which a population would make infinite)
LARGEST_HYPERPARAMETER = float(torch.finfo(torch.float32).max)


@functools.cache
def keep_freed_memory():
    """Have glibc's malloc keep the memory that training frees for the next step, instead of handing it back to the
    system; once per process, and nothing on other C libraries (musl ignores mallopt; macOS and Windows have none).

    Every step allocates and frees the same large buffers (40 MB for the first convolution of a population of 20),
    which glibc by default maps fresh and unmaps, or trims off its heap: about 28,000 page faults per step at K = 20,
    a quarter of its time here (docs/speed.md). M_MMAP_MAX = 0 and M_TRIM_THRESHOLD = -1 keep them in the heap for the
    next step (the process keeps its peak memory until it exits). It changes no number: every tensor is written
    before it is read, and PyTorch aligns it to 64 bytes either way.
    """
    if platform.libc_ver()[0] == 'glibc':
        libc = ctypes.CDLL(None)  # the C library this process runs on
        m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
        libc.mallopt(m_mmap_max, 0)
        libc.mallopt(m_trim_threshold, -1)


def _side_after_features(side):
    """Side of a feature map after two (5x5 convolution, 2x2 max-pool) stages: 32 -> 5, 28 -> 4."""
    return ((side - 4) // 2 - 4) // 2


class LeNet5(nn.Module):
    """conv 5x5 (10) -> max-pool 2 -> ReLU -> conv 5x5 (20) -> max-pool 2 -> ReLU -> linear (10) -> log-softmax."""

    def __init__(self, input_shape):
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, 10, kernel_size=5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(20 * _side_after_features(height) * _side_after_features(width), 10)

    def forward(self, x):
        x = F.relu(self.pool1(self.conv1(x)))
        x = F.relu(self.pool2(self.conv2(x)))
        return F.log_softmax(self.fc(x.flatten(1)), dim=1)


def build_network(*, input_shape, seed, device='cpu'):
    """A freshly initialised network: torch.manual_seed(seed), layers in order, the Linear layer filled with 0.01."""
    torch.manual_seed(seed)
    network = LeNet5(input_shape)
    nn.init.constant_(network.fc.weight, 0.01)
    nn.init.constant_(network.fc.bias, 0.01)
    return network.to(device, memory_format=dataset_management.memory_format(device))


def batches(images, labels, batch_size):
    """Consecutive (images, labels) slices of `batch_size`, in order (the authors never shuffle)."""
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


def batch_count(images, batch_size):
    """How many batches `batches` gives: the divisor of the authors' mean-over-batches losses."""
    return math.ceil(len(images) / batch_size)


def epoch_range(epochs, *, progress):
    """range(epochs), shown as a progress bar (on a terminal) if `progress` and it lasts over EPOCH_BAR_DELAY s."""
    return tqdm(range(epochs), desc='epochs', unit='epoch', leave=False, delay=EPOCH_BAR_DELAY, disable=not progress)


def train(network, images, labels, *, learning_rate, weight_decay, epochs, batch_size, progress=False,
          after_epoch=None):
    """Train with plain SGD; return the mean training loss of each epoch, stopping after a non-finite one;
    after_epoch(), if given, is called after each epoch trained."""
    keep_freed_memory()
    optimizer = torch.optim.SGD(network.parameters(), lr=learning_rate, weight_decay=weight_decay)
    epoch_losses = []
    for _ in epoch_range(epochs, progress=progress):
        network.train()  # after_epoch may have evaluated it
        loss_sum = torch.zeros((), device=images.device)
        for batch_images, batch_labels in batches(images, labels, batch_size):
            loss = F.nll_loss(network(batch_images), batch_labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        epoch_losses.append(loss_sum.item() / batch_count(images, batch_size))
        if after_epoch:
            after_epoch()
        if not math.isfinite(epoch_losses[-1]):
            break  # diverged: the weights are no longer numbers, more epochs change nothing
    return epoch_losses


@torch.no_grad()
def evaluate(network, images, labels, *, batch_size):
    """Return (mean over batches of the batch-mean NLL loss, accuracy), as the authors computed them."""
    network.eval()
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for batch_images, batch_labels in batches(images, labels, batch_size):
        log_probabilities = network(batch_images)
        loss_sum += F.nll_loss(log_probabilities, batch_labels)
        correct += (log_probabilities.argmax(dim=1) == batch_labels).sum()
    return loss_sum.item() / batch_count(images, batch_size), correct.item() / len(images)


def train_and_evaluate(splits, *, seed, learning_rate, weight_decay, epochs, batch_size, progress=False,
                       curves=False):
    """Train a fresh network on splits.train; return its validation and test scores and the seconds taken (with
    curves, also 'curve': see curve_of)."""
    start = time.perf_counter()
    images = splits.train.images
    network = build_network(input_shape=tuple(images.shape[1:]), seed=seed, device=images.device)
    curve = []

    def scored():
        return [*evaluate(network, *splits.validation, batch_size=batch_size),
                *evaluate(network, *splits.test, batch_size=batch_size)]
    train(network, *splits.train, learning_rate=learning_rate, weight_decay=weight_decay, epochs=epochs,
          batch_size=batch_size, progress=progress, after_epoch=(lambda: curve.append(scored())) if curves else None)
    row = scores(scored(), seconds=time.perf_counter() - start)
    return {**row, 'curve': curve_of(curve, epochs)} if curves else row


def curve_of(scored_epochs, epochs):
    """A network's curve: [val_loss, val_accuracy, test_loss, test_accuracy] after each of `epochs` epochs, those
    after it diverged and stopped (its weights no longer change) its last scores again."""
    return scored_epochs + scored_epochs[-1:] * (epochs - len(scored_epochs))


def scores(scored, *, seconds):
    """A results row's scores from [validation loss, validation accuracy, test loss, test accuracy]."""
    return dict(zip(('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy'), scored), seconds=seconds)


def build_population(*, input_shape, seeds, device='cpu'):
    """The parameters of len(seeds) networks, stacked along a first (member) axis: member k starts exactly
    as build_network(seed=seeds[k])."""
    networks = [build_network(input_shape=input_shape, seed=seed, device=device) for seed in seeds]
    return {name: torch.stack([dict(net.named_parameters())[name].detach() for net in networks])
            for name, _ in networks[0].named_parameters()}


def population_forward(parameters, images):
    """Log-probabilities (members x batch x 10) of every member of a population on the same images: LeNet5's
    forward with the members' first convolutions as one convolution of K*10 filters, their second as one grouped
    convolution (groups=K) and their linear layers as one batched matrix product."""
    members = len(parameters['fc.weight'])
    x = F.conv2d(images, parameters['conv1.weight'].flatten(0, 1), parameters['conv1.bias'].flatten())
    x = F.relu(F.max_pool2d(x, 2))
    x = F.conv2d(x, parameters['conv2.weight'].flatten(0, 1), parameters['conv2.bias'].flatten(), groups=members)
    x = F.relu(F.max_pool2d(x, 2))
    x = x.reshape(len(images), members, -1).transpose(0, 1)  # members x batch x features, each as LeNet5 flattens
    logits = torch.baddbmm(parameters['fc.bias'].unsqueeze(1), x, parameters['fc.weight'].transpose(1, 2))
    return F.log_softmax(logits, dim=2)


def _member_losses(log_probabilities, labels):
    """Each member's mean NLL loss over the batch."""
    members = len(log_probabilities)
    return F.nll_loss(log_probabilities.transpose(1, 2), labels.expand(members, -1), reduction='none').mean(dim=1)


class PopulationSGD:
    """Plain SGD for a population: step(images, labels) gives every member still training (`training`)
    torch.optim.SGD's update, member by member, and adds the members' batch losses to `loss_sums`. Making one
    calls keep_freed_memory(), as train() does."""

    def __init__(self, parameters, *, learning_rates, weight_decays):
        keep_freed_memory()
        device = next(iter(parameters.values())).device
        self.parameters = parameters
        self.learning_rates = torch.tensor(learning_rates, dtype=torch.float32, device=device)
        self.weight_decays = torch.tensor(weight_decays, dtype=torch.float32, device=device)
        self.training = torch.ones(len(learning_rates), dtype=torch.bool, device=device)
        self.loss_sums = torch.zeros(len(learning_rates), device=device)

    def step(self, images, labels):
        # Fresh autograd leaves every step: a leaf reused across steps would keep the CUDA stream of an earlier
        # step, which CUDA-graph recording rejects.
        leaves = {name: parameter.detach().requires_grad_() for name, parameter in self.parameters.items()}
        losses = _member_losses(population_forward(leaves, images), labels)
        gradients = torch.autograd.grad(losses.sum(), list(leaves.values()))  # members' gradients never mix
        with torch.no_grad():
            for parameter, gradient in zip(self.parameters.values(), gradients):
                shape = (-1,) + (1,) * (parameter.dim() - 1)
                update = self.learning_rates.view(shape) * (gradient + self.weight_decays.view(shape) * parameter)
                parameter.sub_(torch.where(self.training.view(shape), update, 0))  # a stopped member keeps its weights
            self.loss_sums += losses


def _cuda_graph(step, state, *example_inputs):
    """Record step(*inputs) once as a CUDA graph; return a function that replays it on new inputs of the same
    shapes (one launch instead of dozens per batch), or runs step itself on other shapes. The warm-up steps
    that recording needs are undone by restoring the tensors in `state`."""
    saved = [tensor.clone() for tensor in state]
    static_inputs = [tensor.clone() for tensor in example_inputs]
    side_stream = torch.cuda.Stream()
    side_stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side_stream):
        for _ in range(2):
            step(*static_inputs)
    torch.cuda.current_stream().wait_stream(side_stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(*static_inputs)
    for tensor, value in zip(state, saved):
        tensor.copy_(value)

    def replay(*inputs):
        if any(new.shape != static.shape for new, static in zip(inputs, static_inputs)):
            return step(*inputs)
        for static, new in zip(static_inputs, inputs):
            static.copy_(new)
        graph.replay()
    return replay


def train_population(parameters, images, labels, *, learning_rates, weight_decays, epochs, batch_size,
                     progress=False, after_epoch=None):
    """Train every member as train() trains one network, all on the same batches; return each member's epoch
    losses. A member stops after its first non-finite epoch, as train() does, and the others go on. after_epoch(),
    if given, is called after each epoch trained."""
    optimizer = PopulationSGD(parameters, learning_rates=learning_rates, weight_decays=weight_decays)
    step, training, loss_sums = optimizer.step, optimizer.training, optimizer.loss_sums
    if images.device.type == 'cuda':
        step = _cuda_graph(step, [*parameters.values(), loss_sums], images[:batch_size], labels[:batch_size])
    epoch_losses = [[] for _ in learning_rates]
    for _ in epoch_range(epochs, progress=progress):
        loss_sums.zero_()
        for batch_images, batch_labels in batches(images, labels, batch_size):
            step(batch_images, batch_labels)
        sums = loss_sums.tolist()
        for member in training.nonzero().flatten().tolist():
            epoch_losses[member].append(sums[member] / batch_count(images, batch_size))
        if after_epoch:
            after_epoch()
        training &= torch.isfinite(loss_sums)
        if not training.any():
            break
    return epoch_losses


@torch.no_grad()
def evaluate_population(parameters, images, labels, *, batch_size):
    """Each member's (loss, accuracy) as evaluate() computes them."""
    members = len(parameters['fc.weight'])
    loss_sums = torch.zeros(members, device=images.device)
    correct = torch.zeros(members, dtype=torch.int64, device=images.device)
    for batch_images, batch_labels in batches(images, labels, batch_size):
        log_probabilities = population_forward(parameters, batch_images)
        loss_sums += _member_losses(log_probabilities, batch_labels)
        correct += (log_probabilities.argmax(dim=2) == batch_labels).sum(dim=1)
    return [(loss_sum / batch_count(images, batch_size), hits / len(images))
            for loss_sum, hits in zip(loss_sums.tolist(), correct.tolist())]


def train_and_evaluate_population(splits, *, seeds, learning_rates, weight_decays, epochs, batch_size,
                                  progress=False, curves=False):
    """train_and_evaluate for len(seeds) configurations at once; `seconds` is each member's share of the time."""
    return train_and_evaluate_from(splits, seeds=seeds, weights=[None] * len(seeds), learning_rates=learning_rates,
                                   weight_decays=weight_decays, epochs=epochs, batch_size=batch_size,
                                   progress=progress, curves=curves)[0]


def train_and_evaluate_from(splits, *, seeds, weights, learning_rates, weight_decays, epochs, batch_size,
                            progress=False, curves=False):
    """train_and_evaluate_population for networks that may continue: member k starts from weights[k] (a network's
    parameters, {name: tensor}, as this returns them) or, where that is None, fresh from seeds[k], and trains
    `epochs` more epochs (plain SGD keeps no other state, and the batches come in the same order every epoch). Returns
    the members' scores (with curves, each with its 'curve' over those epochs: curve_of) and their parameters after
    training, stacked as build_population stacks them."""
    start = time.perf_counter()
    images = splits.train.images
    parameters = build_population(input_shape=tuple(images.shape[1:]), seeds=seeds, device=images.device)
    with torch.no_grad():
        for member, member_weights in enumerate(weights):
            for name, tensor in (member_weights or {}).items():
                parameters[name][member] = tensor
    scored_epochs = []  # per epoch, each member's scores

    def scored():
        return [[*validation, *test] for validation, test in
                zip(evaluate_population(parameters, *splits.validation, batch_size=batch_size),
                    evaluate_population(parameters, *splits.test, batch_size=batch_size))]
    train_population(parameters, *splits.train, learning_rates=learning_rates, weight_decays=weight_decays,
                     epochs=epochs, batch_size=batch_size, progress=progress,
                     after_epoch=(lambda: scored_epochs.append(scored())) if curves else None)
    final = scored()
    seconds = (time.perf_counter() - start) / len(seeds)
    rows = [scores(member, seconds=seconds) for member in final]
    if curves:
        for member, row in enumerate(rows):
            row['curve'] = curve_of([epoch[member] for epoch in scored_epochs], epochs)
    return rows, parameters


def device_name(device):
    """The device as results and figures name it: the GPU's model, or the CPU and its thread count."""
    device = torch.device(device)
    if device.type == 'cuda':
        return f'{device} ({torch.cuda.get_device_name(device)})'
    return f'cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)'


def main(argv=None):
    parser = command_line.ArgumentParser(description=__doc__, formatter_class=command_line.HelpFormatter)
    parser.add_argument('--learning-rate', type=float, help='train this configuration (needs --weight-decay)')
    parser.add_argument('--weight-decay', type=float, help='train this configuration (needs --learning-rate)')
    parser.add_argument('--seed', type=int, default=SEED, help="the network's seed: a results row's seed column")
    parser.add_argument('--epochs', type=int, default=EPOCHS, help='training epochs')
    command_line.add_data_arguments(parser, dataset=DATASET, data_dir=DATA_DIR, validation_size=VALIDATION_SIZE,
                                    training_size=TRAINING_SIZE, batch_size=BATCH_SIZE, device=DEVICE)
    args = parser.parse_args(argv)
    command_line.check_data_arguments(parser, args)
    if not 0 <= args.seed < 2 ** 64:
        parser.error(f'--seed {args.seed} must be between 0 and 2**64 - 1 (torch.manual_seed takes no other)')
    input_shape = dataset_management.DATASETS[args.dataset].input_shape
    if args.learning_rate is None and args.weight_decay is None:
        summary(build_network(input_shape=input_shape, seed=args.seed), input_shape, device='cpu')
        return
    if args.learning_rate is None or args.weight_decay is None:
        parser.error('--learning-rate and --weight-decay go together: give both to train, neither for the summary')
    if not (0 <= args.learning_rate <= LARGEST_HYPERPARAMETER and 0 <= args.weight_decay <= LARGEST_HYPERPARAMETER):
        parser.error(f'--learning-rate {args.learning_rate} and --weight-decay {args.weight_decay} must both be '
                     f'finite, >= 0 and at most {LARGEST_HYPERPARAMETER:g} (float32\'s largest)')
    command_line.check_positive_integers(parser, args, 'epochs')
    try:
        splits = command_line.load_data(parser, args)
        row = train_and_evaluate(splits, seed=args.seed, learning_rate=args.learning_rate,
                                 weight_decay=args.weight_decay, epochs=args.epochs, batch_size=args.batch_size,
                                 progress=sys.stderr.isatty())
    except KeyboardInterrupt:  # Ctrl-C, or stopping.Stopped: SIGTERM, SIGHUP
        parser.fail(stopping.exit_status(), 'nothing was written (network.py writes no file)',
                    kind='interrupted')
    for key, value in row.items():
        print(f'{key:<14} {value!r}')


if __name__ == '__main__':
    stopping.raise_when_stopped()
    main()
    stopping.default_when_stopped()
