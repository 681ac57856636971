"""The paper's LeNet-5-style CNN: build it, train it with SGD, evaluate it -> (loss, accuracy).

`python network.py` prints the CIFAR-10 network's summary (the paper's Fig. 3);
`python network.py --learning-rate LR --weight-decay WD --seed S` trains that one configuration
and prints its validation and test loss and accuracy, the numbers of the matching results.csv row.
"""
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchsummary import summary

import dataset_management

torch.backends.cudnn.deterministic = True  # cuDNN's default convolution kernels are not bitwise repeatable


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
    return network.to(device)


def batches(images, labels, batch_size):
    """Consecutive (images, labels) slices of `batch_size`, in order (the authors never shuffle)."""
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


def train(network, images, labels, *, learning_rate, weight_decay, epochs, batch_size):
    """Train with plain SGD; return the mean training loss of each epoch, stopping after a non-finite one."""
    optimizer = torch.optim.SGD(network.parameters(), lr=learning_rate, weight_decay=weight_decay)
    network.train()
    epoch_losses = []
    for _ in range(epochs):
        loss_sum = torch.zeros((), device=images.device)
        for batch_images, batch_labels in batches(images, labels, batch_size):
            loss = F.nll_loss(network(batch_images), batch_labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        epoch_losses.append(loss_sum.item() / math.ceil(len(images) / batch_size))
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
    return loss_sum.item() / math.ceil(len(images) / batch_size), correct.item() / len(images)


def train_and_evaluate(splits, *, seed, learning_rate, weight_decay, epochs, batch_size):
    """Train a fresh network on splits.train; return its validation and test scores and the seconds taken."""
    start = time.perf_counter()
    images = splits.train.images
    network = build_network(input_shape=tuple(images.shape[1:]), seed=seed, device=images.device)
    train(network, *splits.train, learning_rate=learning_rate, weight_decay=weight_decay,
          epochs=epochs, batch_size=batch_size)
    val_loss, val_accuracy = evaluate(network, *splits.validation, batch_size=batch_size)
    test_loss, test_accuracy = evaluate(network, *splits.test, batch_size=batch_size)
    return dict(val_loss=val_loss, val_accuracy=val_accuracy, test_loss=test_loss, test_accuracy=test_accuracy,
                seconds=time.perf_counter() - start)


def main(argv=None):
    import test  # the experiment's defaults and data flags (imported here: test.py imports this module)
    parser = test.ArgumentParser(description=__doc__, formatter_class=test.HelpFormatter)
    parser.add_argument('--learning-rate', type=float, help='train this configuration (needs --weight-decay)')
    parser.add_argument('--weight-decay', type=float, help='train this configuration (needs --learning-rate)')
    parser.add_argument('--seed', type=int, default=0, help="the network's seed: a results row's seed column")
    parser.add_argument('--epochs', type=int, default=test.MAX_EPOCHS, help='training epochs')
    test.add_data_arguments(parser)
    args = parser.parse_args(argv)
    test.check_data_arguments(parser, args)
    input_shape = dataset_management.INPUT_SHAPES[args.dataset]
    if args.learning_rate is None and args.weight_decay is None:
        summary(build_network(input_shape=input_shape, seed=args.seed), input_shape, device='cpu')
        return
    if args.learning_rate is None or args.weight_decay is None:
        parser.error('--learning-rate and --weight-decay go together: give both to train, neither for the summary')
    if args.learning_rate < 0 or args.weight_decay < 0:
        parser.error(f'--learning-rate {args.learning_rate} and --weight-decay {args.weight_decay} must both be >= 0')
    if args.epochs < 1:
        parser.error(f'--epochs {args.epochs} must be a positive integer')
    splits = test.load_data(parser, args)
    scores = train_and_evaluate(splits, seed=args.seed, learning_rate=args.learning_rate,
                                weight_decay=args.weight_decay, epochs=args.epochs, batch_size=args.batch_size)
    for key, value in scores.items():
        print(f'{key:<14} {value!r}')


if __name__ == '__main__':
    main()
