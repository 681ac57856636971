"""The network: its shapes and parameters, initialisation, training, evaluation, divergence, and its CLI."""
import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import run_script

import dataset_management
import network


@pytest.fixture(scope='module')
def digits():
    return dataset_management.load_splits('digits')


def test_cifar10_network_has_the_papers_shapes_and_10790_parameters():
    net = network.build_network(input_shape=(3, 32, 32), seed=0)
    assert sum(p.numel() for p in net.parameters()) == 10_790
    assert [tuple(p.shape) for p in net.parameters()] == [(10, 3, 5, 5), (10,), (20, 10, 5, 5), (20,), (10, 500), (10,)]
    log_probabilities = net(torch.rand(7, 3, 32, 32))
    assert log_probabilities.shape == (7, 10)
    assert torch.allclose(log_probabilities.exp().sum(dim=1), torch.ones(7))


def test_mnist_network_takes_1x28x28_through_a_320_feature_linear_layer():
    net = network.build_network(input_shape=(1, 28, 28), seed=0)
    assert net.fc.in_features == 320
    assert sum(p.numel() for p in net.parameters()) == 260 + 5020 + 3210
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_summary_shows_the_papers_figure_3():
    result = run_script('network.py', cwd='.')
    assert result.returncode == 0, result.stderr
    text = re.sub(r'[ \t]+', ' ', result.stdout)
    for line in ('Conv2d-1 [-1, 10, 28, 28] 760', 'MaxPool2d-2 [-1, 10, 14, 14] 0', 'Conv2d-3 [-1, 20, 10, 10] 5,020',
                 'MaxPool2d-4 [-1, 20, 5, 5] 0', 'Linear-5 [-1, 10] 5,010', 'Total params: 10,790',
                 'Trainable params: 10,790', 'Non-trainable params: 0'):
        assert line in text
    assert 'ReLU' not in text  # the paper's figure lists no activation layers


def test_build_network_is_seeded_with_default_convolutions_and_a_0_01_linear_layer():
    net = network.build_network(input_shape=(3, 32, 32), seed=42)
    assert torch.all(net.fc.weight == 0.01) and torch.all(net.fc.bias == 0.01)
    torch.manual_seed(42)
    conv1 = torch.nn.Conv2d(3, 10, 5)  # PyTorch's default initialisation, drawn first
    assert torch.equal(net.conv1.weight, conv1.weight) and torch.equal(net.conv1.bias, conv1.bias)
    same = network.build_network(input_shape=(3, 32, 32), seed=42)
    other = network.build_network(input_shape=(3, 32, 32), seed=43)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), same.parameters()))
    assert not torch.equal(net.conv2.weight, other.conv2.weight)


def test_an_untrained_network_predicts_uniformly_and_training_lowers_validation_loss(digits):
    net = network.build_network(input_shape=(1, 28, 28), seed=0)
    loss, accuracy = network.evaluate(net, *digits.validation, batch_size=64)
    assert loss == pytest.approx(math.log(10), abs=1e-5)  # equal logits from the constant linear layer
    assert accuracy == pytest.approx((digits.validation.labels == 0).float().mean().item())  # ties go to class 0
    epoch_losses = network.train(net, *digits.train, learning_rate=0.1, weight_decay=0.0005, epochs=5, batch_size=64)
    assert len(epoch_losses) == 5 and epoch_losses[-1] < epoch_losses[0]
    loss, accuracy = network.evaluate(net, *digits.validation, batch_size=64)
    assert loss < 0.6 and accuracy > 0.8


def test_evaluate_averages_batch_means_like_the_authors(digits):
    net = network.build_network(input_shape=(1, 28, 28), seed=3)
    network.train(net, *digits.train, learning_rate=0.05, weight_decay=0, epochs=1, batch_size=64)
    images, labels = digits.validation  # 360 images: five batches of 64 and one of 40
    with torch.no_grad():
        batch_losses = [F.nll_loss(net(images[i:i + 64]), labels[i:i + 64]).item() for i in range(0, 360, 64)]
        correct = (net(images).argmax(dim=1) == labels).sum().item()
    loss, accuracy = network.evaluate(net, images, labels, batch_size=64)
    assert loss == pytest.approx(sum(batch_losses) / 6, rel=1e-6)
    assert accuracy == correct / 360


def test_training_is_deterministic_on_cpu(digits):
    scores = [network.train_and_evaluate(digits, seed=5, learning_rate=0.05, weight_decay=0.0003, epochs=2,
                                         batch_size=64) for _ in range(2)]
    for key in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy'):
        assert scores[0][key] == scores[1][key]


def test_a_diverging_network_stops_early_and_scores_nan(digits):
    net = network.build_network(input_shape=(1, 28, 28), seed=1)
    epoch_losses = network.train(net, *digits.train, learning_rate=1e30, weight_decay=0, epochs=5, batch_size=64)
    assert len(epoch_losses) < 5 and not math.isfinite(epoch_losses[-1])
    loss, accuracy = network.evaluate(net, *digits.validation, batch_size=64)
    assert math.isnan(loss) and 0 <= accuracy <= 1


def test_real_mnist_images_train_above_90_percent(mnist_t10k_dir):
    splits = dataset_management.load_splits('mnist', str(mnist_t10k_dir), validation_size=2000)
    assert len(splits.train.images) == 8000
    scores = network.train_and_evaluate(splits, seed=0, learning_rate=0.1, weight_decay=0, epochs=3, batch_size=64)
    assert scores['val_accuracy'] > 0.9


def test_cli_needs_both_hyperparameters_to_train(tmp_path):
    result = run_script('network.py', '--learning-rate', '0.1', cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count('\n') == 1 and '--weight-decay' in result.stderr
