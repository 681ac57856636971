"""The network: its shapes and parameters, initialisation, training, evaluation, divergence, and its CLI."""
import math
import platform
import re
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ROOT, run_script, write_mnist
from torchvision import transforms

import dataset_management
import network


PINNED_DIGITS_LOSS = 1.8626163800557454  # seed 0, learning rate 0.1, weight decay 0.0005, 2 epochs, batch 64, on CPU


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


def test_network_py_defaults_are_test_pys_so_that_a_row_retrains_to_its_numbers():
    import test as experiment
    for name in ('DATASET', 'DATA_DIR', 'VALIDATION_SIZE', 'EPOCHS', 'BATCH_SIZE', 'DEVICE'):
        assert getattr(network, name) == getattr(experiment, name), name


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


def test_a_population_starts_as_its_members_built_alone_and_computes_what_they_compute(digits):
    seeds = [4, 9, 4]
    parameters = network.build_population(input_shape=(1, 28, 28), seeds=seeds)
    images = digits.validation.images[:50]
    log_probabilities = network.population_forward(parameters, images)
    assert log_probabilities.shape == (3, 50, 10)
    for member, seed in enumerate(seeds):
        alone = network.build_network(input_shape=(1, 28, 28), seed=seed)
        for name, parameter in alone.named_parameters():
            assert torch.equal(parameters[name][member], parameter)
        torch.nn.init.normal_(alone.fc.weight)  # the 0.01 layer outputs equal logits for every image
        parameters['fc.weight'].data[member] = alone.fc.weight
        with torch.no_grad():
            expected = alone(images)
        assert torch.allclose(network.population_forward(parameters, images)[member], expected, atol=1e-5)


def test_population_members_train_and_score_as_they_would_alone_and_a_diverging_one_disturbs_none(digits):
    seeds, learning_rates, weight_decays = [1, 2, 3], [0.05, 1e30, 0.08], [0.0003, 0, 0.001]
    parameters = network.build_population(input_shape=(1, 28, 28), seeds=seeds)
    epoch_losses = network.train_population(parameters, *digits.train, learning_rates=learning_rates,
                                            weight_decays=weight_decays, epochs=3, batch_size=64)
    validation = network.evaluate_population(parameters, *digits.validation, batch_size=64)
    for member in range(3):
        alone = network.build_network(input_shape=(1, 28, 28), seed=seeds[member])
        alone_losses = network.train(alone, *digits.train, learning_rate=learning_rates[member],
                                     weight_decay=weight_decays[member], epochs=3, batch_size=64)
        alone_loss, alone_accuracy = network.evaluate(alone, *digits.validation, batch_size=64)
        loss, accuracy = validation[member]
        if member == 1:  # diverged in its first epoch and stopped there, as alone
            assert len(epoch_losses[1]) == len(alone_losses) == 1 and math.isnan(epoch_losses[1][0])
            assert math.isnan(loss) and math.isnan(alone_loss)
            continue
        assert len(epoch_losses[member]) == 3 and epoch_losses[member] == pytest.approx(alone_losses, rel=1e-5)
        assert loss == pytest.approx(alone_loss, rel=1e-5) and accuracy == pytest.approx(alone_accuracy, abs=0.01)
        assert loss < 1.5  # it learnt


def test_curves_score_every_epoch_alone_and_in_populations_and_change_no_score(digits):
    config = dict(seeds=[7, 8, 9], learning_rates=[0.03, 1e30, 0.08], weight_decays=[0.0005, 0, 0])  # one diverges
    rows = network.train_and_evaluate_population(digits, **config, epochs=3, batch_size=64, curves=True)
    plain = network.train_and_evaluate_population(digits, **config, epochs=3, batch_size=64)
    for member, (row, without) in enumerate(zip(rows, plain)):
        alone = network.train_and_evaluate(digits, seed=config['seeds'][member],
                                           learning_rate=config['learning_rates'][member],
                                           weight_decay=config['weight_decays'][member], epochs=3, batch_size=64,
                                           curves=True)
        assert len(row['curve']) == len(alone['curve']) == 3
        if member == 1:  # diverged in its first epoch: its weights stop there, and so do its scores
            assert all(math.isnan(epoch[0]) for epoch in row['curve'] + alone['curve'])
            for curve in (row['curve'], alone['curve']):
                assert repr(curve[1:]) == repr(curve[:1] * 2)  # NaN, as written, equals NaN
            continue
        scores = [row[key] for key in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')]
        assert scores == [without[key] for key in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')]
        assert row['curve'][-1] == scores  # the last epoch's scoring is the row's
        assert np.allclose(row['curve'], alone['curve'], rtol=1e-5, atol=0.01)  # accuracy: an image may flip
        assert row['curve'][0][0] > row['curve'][-1][0]  # the validation loss falls epoch by epoch here


def test_train_and_evaluate_population_gives_train_and_evaluate_rows(digits):
    config = dict(seeds=[7, 8], learning_rates=[0.03, 0.08], weight_decays=[0.0005, 0])
    rows = network.train_and_evaluate_population(digits, **config, epochs=2, batch_size=64)
    for member, row in enumerate(rows):
        alone = network.train_and_evaluate(digits, seed=config['seeds'][member],
                                           learning_rate=config['learning_rates'][member],
                                           weight_decay=config['weight_decays'][member], epochs=2, batch_size=64)
        assert row.keys() == alone.keys() and row['seconds'] > 0
        for key in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy'):
            assert row[key] == pytest.approx(alone[key], rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU: the population path records a CUDA graph')
def test_a_population_on_cuda_repeats_and_matches_its_members_trained_alone_on_cuda(digits):
    splits = dataset_management.Splits(*(dataset_management.to_device(split, 'cuda') for split in digits))
    config = dict(seeds=[1, 2, 3], learning_rates=[0.05, 1e30, 0.08], weight_decays=[0.0003, 0, 0.001])
    rows = network.train_and_evaluate_population(splits, **config, epochs=3, batch_size=64)
    again = network.train_and_evaluate_population(splits, **config, epochs=3, batch_size=64)
    for member, row in enumerate(rows):
        alone = network.train_and_evaluate(splits, seed=config['seeds'][member],
                                           learning_rate=config['learning_rates'][member],
                                           weight_decay=config['weight_decays'][member], epochs=3, batch_size=64)
        if member == 1:
            assert math.isnan(row['val_loss']) and math.isnan(again[1]['val_loss']) and math.isnan(alone['val_loss'])
            continue
        for key in ('val_loss', 'val_accuracy', 'test_loss', 'test_accuracy'):
            assert row[key] == again[member][key]
            assert row[key] == pytest.approx(alone[key], rel=1e-4)


def test_gpus_compute_in_fp32_as_the_authors_gpu_did_and_repeatably():
    assert torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.conv.fp32_precision == 'ieee'  # not PyTorch's default TF32
    assert torch.backends.cuda.matmul.fp32_precision == 'ieee'


def fp32_error(operation, *operands):
    """The largest error of `operation` on CUDA float32 operands, relative to the largest exact (float64) value."""
    exact = operation(*(operand.double() for operand in operands))
    return ((operation(*(operand.cuda() for operand in operands)).cpu().double() - exact).abs().max()
            / exact.abs().max()).item()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_convolutions_and_matrix_products_are_fp32_not_tf32():
    """A population's grouped second convolution and batched linear layer (10 members): on an H100 their errors
    were 7e-7 in FP32 and 3e-4 in TF32."""
    generator = torch.Generator().manual_seed(0)
    images, filters = torch.rand(64, 100, 14, 14, generator=generator), torch.randn(200, 10, 5, 5, generator=generator)
    features, weights = torch.rand(10, 64, 500, generator=generator), torch.randn(10, 500, 10, generator=generator)
    assert fp32_error(lambda images, filters: F.conv2d(images, filters, groups=10), images, filters) < 1e-5
    assert fp32_error(torch.bmm, features, weights) < 1e-5


def test_real_mnist_images_train_above_90_percent(mnist_t10k_dir):
    splits = dataset_management.load_splits('mnist', str(mnist_t10k_dir), validation_size=2000)
    assert len(splits.train.images) == 8000
    scores = network.train_and_evaluate(splits, seed=0, learning_rate=0.1, weight_decay=0, epochs=3, batch_size=64)
    assert scores['val_accuracy'] > 0.9


class AuthorsImages(torch.utils.data.Dataset):
    """The authors' data path: uint8 H x W images made tensors by ToTensor each time one is read."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return transforms.ToTensor()(self.images[index]), int(self.labels[index])


def authors_train_and_evaluate(train, validation, *, seed, learning_rate, weight_decay, epochs):
    """An independent reference, written as the authors' code is: DataLoaders (batch 64, no shuffling) over
    AuthorsImages, LeNet5 built in N x C x H x W with the Linear layer filled with 0.01, torch.optim.SGD; the
    validation loss is the mean of the batches' mean losses."""
    torch.manual_seed(seed)
    model = network.LeNet5((1, 28, 28))
    nn.init.constant_(model.fc.weight, 0.01)
    nn.init.constant_(model.fc.bias, 0.01)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        for images, labels in torch.utils.data.DataLoader(AuthorsImages(*train), batch_size=64):
            optimizer.zero_grad()
            loss = F.nll_loss(model(images), labels)
            loss.backward()
            optimizer.step()
    model.eval()
    loader = torch.utils.data.DataLoader(AuthorsImages(*validation), batch_size=64)
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for images, labels in loader:
            output = model(images)
            loss_sum += F.nll_loss(output, labels).item()
            correct += (output.argmax(dim=1) == labels).sum().item()
    return loss_sum / len(loader), correct / len(validation[0])


def test_training_computes_what_the_authors_pipeline_computes(digits, tmp_path):
    images = (torch.cat([digits.train.images, digits.validation.images, digits.test.images]) * 255).round()
    images = images.to(torch.uint8).squeeze(1).numpy()  # the digits as 28 x 28 uint8 images, MNIST's format
    labels = torch.cat([digits.train.labels, digits.validation.labels, digits.test.labels]).numpy()
    write_mnist(tmp_path, images[:1437], labels[:1437], images[1437:], labels[1437:])
    splits = dataset_management.load_splits('mnist', str(tmp_path), validation_size=360)
    ours = network.train_and_evaluate(splits, seed=3, learning_rate=0.05, weight_decay=0.001, epochs=2, batch_size=64)
    reference = authors_train_and_evaluate((images[:1077], labels[:1077]), (images[1077:1437], labels[1077:1437]),
                                           seed=3, learning_rate=0.05, weight_decay=0.001, epochs=2)
    assert ours['val_loss'] < 2.2  # it learnt something: chance level is 2.30
    assert (ours['val_loss'], ours['val_accuracy']) == pytest.approx(reference, rel=1e-4)


PAGE_FAULTS_OF_A_REUSED_BUFFER = """
import resource, torch, network

def page_faults_of_a_reused_buffer():
    for _ in range(5):  # a few steps' allocations till the heap holds two (posix_memalign asks for a bit more)
        torch.ones(2 ** 24)  # 64 MiB, freed at once
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(2 ** 24)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

before = page_faults_of_a_reused_buffer()
network.train(network.build_network(input_shape=(1, 28, 28), seed=0), torch.zeros(4, 1, 28, 28),
              torch.zeros(4, dtype=torch.int64), learning_rate=0.1, weight_decay=0, epochs=1, batch_size=4)
print(before, page_faults_of_a_reused_buffer())
"""


def transparent_huge_pages_always():
    path = Path('/sys/kernel/mm/transparent_hugepage/enabled')
    return path.exists() and '[always]' in path.read_text()


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='keep_freed_memory sets glibc malloc only')
@pytest.mark.skipif(transparent_huge_pages_always(), reason='huge pages fault in 2 MiB at a time')
def test_after_training_a_freed_buffer_is_reused_instead_of_faulting_in_new_pages():
    result = subprocess.run([sys.executable, '-c', PAGE_FAULTS_OF_A_REUSED_BUFFER], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    before, after = map(int, result.stdout.split())
    assert before > 2 ** 26 // resource.getpagesize() // 2  # glibc mapped the 64 MiB afresh: a fault a page
    assert after < before // 100


def test_both_training_paths_keep_freed_memory(monkeypatch, digits):
    calls = []
    monkeypatch.setattr(network, 'keep_freed_memory', lambda: calls.append('kept'))
    images, labels = digits.train.images[:4], digits.train.labels[:4]
    network.train(network.build_network(input_shape=(1, 28, 28), seed=0), images, labels, learning_rate=0.1,
                  weight_decay=0, epochs=1, batch_size=4)
    assert calls == ['kept']
    network.train_population(network.build_population(input_shape=(1, 28, 28), seeds=[0, 1]), images, labels,
                             learning_rates=[0.1, 0.2], weight_decays=[0, 0], epochs=1, batch_size=4)
    assert calls == ['kept', 'kept']


def test_a_validation_loss_after_2_epochs_on_digits_is_pinned(digits):
    scores = network.train_and_evaluate(digits, seed=0, learning_rate=0.1, weight_decay=0.0005, epochs=2,
                                        batch_size=64)
    assert scores['val_loss'] == pytest.approx(PINNED_DIGITS_LOSS, rel=1e-4)  # a change here changes every number


def test_a_long_training_shows_a_bar_over_its_epochs(monkeypatch, capsys):
    images, labels = torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.int64)
    model = network.build_network(input_shape=(1, 28, 28), seed=0)
    monkeypatch.setattr(network, 'EPOCH_BAR_DELAY', 0)  # every training is "long"
    network.train(model, images, labels, learning_rate=0.01, weight_decay=0, epochs=3, batch_size=4, progress=True)
    assert 'epochs: ' in capsys.readouterr().err
    network.train(model, images, labels, learning_rate=0.01, weight_decay=0, epochs=3, batch_size=4)
    assert capsys.readouterr().err == ''
