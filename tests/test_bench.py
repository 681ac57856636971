"""bench.py: the same data on every path, every path training its networks, its figures and estimates, its
JSON line, the one-step profile and the end-to-end experiment (its bad input: test_command_line.py)."""
import json
import os
import signal
import time

import numpy as np
import pytest
import torch
from conftest import run_script

import bench
import dataset_management
import network
import stopping


def test_the_authors_dataset_reads_the_values_the_tensor_paths_train_on():
    images = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5]
    dataset = bench.AuthorsDataset(images, labels)
    split = dataset_management.to_split(torch.from_numpy(images), torch.tensor(labels))
    for index in range(5):
        image, label = dataset[index]
        assert image.dtype == torch.float32 and torch.equal(image, split.images[index])
        assert label == labels[index] == split.labels[index]


def test_every_path_trains_its_networks_and_the_two_one_model_paths_train_the_same_one():
    images = np.random.default_rng(0).integers(0, 256, size=(96, 32, 32, 3), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 10, size=96).tolist()
    split = dataset_management.to_device(dataset_management.to_split(torch.from_numpy(images), torch.tensor(labels)),
                                         torch.device('cpu'))
    fresh = dict(network.build_network(input_shape=(3, 32, 32), seed=0).named_parameters())
    authors = bench.authors_pipeline(images, labels, batch_size=32, device=torch.device('cpu'))(96)
    ours = bench.one_model_path(split, batch_size=32)(96)
    for name, parameter in ours.named_parameters():
        assert not torch.equal(parameter, fresh[name]), name  # 3 SGD steps moved every layer
        torch.testing.assert_close(parameter, dict(authors.named_parameters())[name], rtol=1e-4, atol=1e-6)
    population = bench.population_path(split, 3, batch_size=32)(96)
    start = network.build_population(input_shape=(3, 32, 32), seeds=range(3))
    for name, parameters in population.items():
        for member in range(3):
            assert not torch.equal(parameters[member], start[name][member]), (name, member)


def test_bench_prints_every_path_and_ends_with_its_figures_as_json(tmp_path):
    dataset, split_images, flops_per_image = 'cifar10', 40_000, 5_382_000  # FLOP per image and training step
    result = run_script('bench.py', '--images', '192', '--batch-size', '32', '--populations', '2', '3',
                        '--device', 'cpu', '--json', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures.keys() == {'device', 'dataset', 'images', 'authors_pipeline', 'one_model', 'population',
                              'population_step_milliseconds', 'full_experiment_seconds', 'matmul_gflops',
                              'utilisation'}
    assert figures['device'].startswith('cpu') and figures['images'] == 192 and figures['dataset'] == dataset
    assert figures['population'].keys() == {'2', '3'}
    rates = [figures['authors_pipeline'], figures['one_model'], figures['population']['2'],
             figures['population']['3']]
    assert all(rate > 0 for rate in rates)
    scale = 25_000 * split_images / 192  # the paper's experiment in model-epochs of 192 images
    estimates = figures['full_experiment_seconds']
    assert estimates.keys() == {'authors_pipeline', 'one_model', 'population'}  # no GPU 'searches' line on CPU
    assert [estimates['authors_pipeline'], estimates['one_model'], estimates['population']['2'],
            estimates['population']['3']] == pytest.approx([scale / rate for rate in rates])
    table = [line.split() for line in result.stdout[result.stdout.index('Training speed'):].splitlines()
             if line.startswith(('authors_pipeline ', 'one_model ', 'population '))]
    assert [(name, int(members)) for name, members, *_ in table] == [
        ('authors_pipeline', 1), ('one_model', 1), ('population', 2), ('population', 3)]
    matmul = figures['matmul_gflops']
    assert 1 < matmul < 1e5 and f'matmul {matmul:.1f} GFLOP/s' in result.stdout
    gflops = [rate * 192 * flops_per_image / 1e9 for rate in rates]
    for (_, members, rate, step, flops, fraction, ratio, hours), want, want_flops in zip(table, rates, gflops):
        assert float(rate) == pytest.approx(want, abs=1e-3)
        assert float(step) == pytest.approx(1000 * int(members) / want / 6, abs=1e-3)  # 6 batches of 32 an epoch
        assert float(flops) == pytest.approx(want_flops, abs=0.051)
        assert float(fraction.rstrip('%')) == pytest.approx(100 * want_flops / matmul, abs=0.51)
        assert float(ratio) == pytest.approx(want / rates[0], abs=0.06)
        assert float(hours) == pytest.approx(scale / want / 3600, rel=0.01, abs=0.01)
    utilisation = figures['utilisation']
    assert [utilisation['authors_pipeline'], utilisation['one_model'], utilisation['population']['2'],
            utilisation['population']['3']] == pytest.approx([flops / matmul for flops in gflops])

    assert figures['population_step_milliseconds'] == pytest.approx({str(members): 1000 * members / rate / 6
                                                                     for members, rate in zip((2, 3), rates[2:])})


def test_with_another_dataset_every_path_trains_its_network_on_images_of_its_shape(monkeypatch, capsys):
    images, labels = bench.synthetic_images(6, (1, 28, 28), np.random.default_rng(0))
    assert images.shape == (6, 28, 28) and images.dtype == np.uint8  # as torchvision keeps MNIST's
    split = bench.as_split(images, labels, torch.device('cpu'))
    assert tuple(split.images.shape) == (6, 1, 28, 28)
    model = bench.authors_pipeline(images, labels, batch_size=2, device=torch.device('cpu'))(6)
    assert model.fc.in_features == 320  # the 1x28x28 network
    assert bench.one_model_path(split, batch_size=2)(6).fc.in_features == 320
    assert bench.population_path(split, 2, batch_size=2)(6)['fc.weight'].shape == (2, 10, 320)
    assert bench.training_split_size('fashion-mnist') == 50_000 and bench.training_split_size('cifar10') == 40_000
    monkeypatch.setattr(bench, 'model_epochs_per_second', lambda *args, **kwargs: 2.0)
    monkeypatch.setattr(bench, 'in_own_process', lambda *args, **kwargs: 1.0)
    monkeypatch.setattr(bench, 'matmul_gflops', lambda device: 100.0)
    bench.main(['--dataset', 'fashion-mnist', '--images', '100', '--populations', '2', '--device', 'cpu', '--json'])
    figures = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert figures['dataset'] == 'fashion-mnist'
    assert figures['full_experiment_seconds']['one_model'] == 25_000 * 50_000 / 100 / 2.0  # of its 50,000 images
    assert figures['utilisation']['one_model'] == pytest.approx(2.0 * 100 * 2_515_200 / 1e9 / 100.0)


def test_a_training_step_costs_the_multiply_adds_of_its_layers_forward_and_backward():
    # CIFAR-10: conv1 28 x 28 x 10 outputs of 75 multiply-adds, conv2 10 x 10 x 20 of 250, the linear layer 10 of 500;
    # forward, the weights' gradients, and the inputs' gradients of conv2 and the linear layer
    assert bench.training_flops_per_image((3, 32, 32)) == 2 * (3 * (588_000 + 500_000 + 5_000) - 588_000)
    # MNIST: conv1 24 x 24 x 10 of 25, conv2 8 x 8 x 20 of 250, the linear layer 10 of 320
    assert bench.training_flops_per_image((1, 28, 28)) == 2 * (3 * (144_000 + 320_000 + 3_200) - 144_000)


def test_the_matrix_product_rate_is_the_flops_of_a_2048_square_product_over_its_best_time(monkeypatch):
    clock = iter([0.0, 0.5, 1.0, 1.25, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0])  # five products: 0.5, 0.25, 1, 0.5, 1 s
    monkeypatch.setattr(bench.time, 'perf_counter', lambda: next(clock))
    assert bench.matmul_gflops(torch.device('cpu')) == pytest.approx(2 * 2048 ** 3 / 0.25 / 1e9)


def authors_rate_and_allocator(*args, **kwargs):
    """In a spawned process: the authors' rate, and whether network.keep_freed_memory had run there."""
    return bench.authors_rate(*args, **kwargs), network.keep_freed_memory.cache_info().currsize


def test_the_authors_pipeline_is_timed_in_a_fresh_process_with_the_allocator_as_they_had_it(monkeypatch, capsys):
    network.keep_freed_memory()  # as after the other paths in this process
    rate, allocator_changed = bench.in_own_process(authors_rate_and_allocator, 64, input_shape=(1, 28, 28), seed=0,
                                                   batch_size=32, device=torch.device('cpu'))
    assert rate > 0 and allocator_changed == 0
    calls = []
    monkeypatch.setattr(bench, 'in_own_process', lambda function, *args, **kwargs: calls.append(function) or 1.0)
    bench.main(['--images', '64', '--batch-size', '32', '--populations', '2', '--device', 'cpu', '--json'])
    figures = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert calls == [bench.authors_rate] and figures['authors_pipeline'] == 1.0


def test_the_profile_tables_one_training_step_of_the_population(tmp_path):
    result = run_script('bench.py', '--profile', '3', '--batch-size', '8', '--device', 'cpu', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('One SGD step of a population of 3 cifar10 networks on cpu')
    calls = {line.split()[0]: int(line.split()[-1]) for line in result.stdout.splitlines()
             if line.strip().startswith('aten::')}
    assert calls['aten::conv2d'] == 2 and calls['aten::convolution_backward'] == 2  # both layers, once each


def test_the_experiment_runs_test_py_end_to_end_and_splits_its_time(tmp_path):
    start = time.perf_counter()
    result = run_script('bench.py', '--experiment', '--images', '64', '--batch-size', '32', '--epochs', '2',
                        '--repetitions', '1', '--schedule', 'rounds', '--device', 'cpu', '--json', cwd=tmp_path)
    wall_seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(' evaluation ') == 50  # test.py's two searches: 2 x 1 repetition x 25 evaluations
    assert 'Table I:' in result.stdout and 'epochs                2' in result.stdout
    assert 'schedule              rounds' in result.stdout
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures['split_images'] == [64, 16, 16] and (figures['epochs'], figures['repetitions']) == (2, 1)
    assert figures['schedule'] == 'rounds' and figures['paper_epochs'] == 50
    seconds, at_50_epochs = figures['seconds'], figures['seconds_at_paper_epochs']
    # every part was timed (20 Gaussian-process proposals), apart, and within the script's own wall time
    assert all(seconds[part] > 0 for part in ('training', 'scoring', 'proposals', 'rest'))
    assert seconds['training'] + seconds['scoring'] + seconds['proposals'] < seconds['total'] < wall_seconds
    assert at_50_epochs == pytest.approx({**seconds, 'training': 25 * seconds['training'],
                                          'total': 24 * seconds['training'] + seconds['total']})
    table = result.stdout[result.stdout.index('End to end on cpu'):].splitlines()
    assert [line.split()[0] for line in table[4:9]] == ['training', 'scoring', 'proposals', 'rest', 'total']
    assert [float(number) for number in table[8].split()[1:]] == pytest.approx(
        [seconds['total'], at_50_epochs['total']], abs=0.051)
    assert list(tmp_path.iterdir()) == []  # the experiment ran in a temporary folder, removed


def test_an_experiment_stopped_says_nothing_was_kept_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench.tempfile, 'tempdir', str(tmp_path))
    monkeypatch.setattr(stopping, 'received', None)
    monkeypatch.setattr(bench.local_training, 'train_networks', lambda *_, **__: os.kill(os.getpid(), signal.SIGTERM))
    handlers = {number: signal.getsignal(number) for number in stopping.SIGNALS}
    try:
        with pytest.raises(SystemExit) as exit:
            bench.main(['--experiment', '--images', '64', '--batch-size', '32', '--epochs', '1', '--repetitions',
                        '1', '--device', 'cpu'])
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # no second stop can interrupt its exit
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    stderr = capsys.readouterr().err
    assert exit.value.code == 143 and stderr.count('\n') == 1
    assert stderr.endswith(': interrupted: nothing was kept: the experiment ran in a temporary folder, now removed\n')
    assert list(tmp_path.iterdir()) == []


def test_the_proposals_of_a_study_on_a_table_are_timed_at_each_number_of_processes(digits_table, capsys):
    bench.main(['--proposals', str(digits_table), '--repetitions', '2', '--evaluations', '9', '--processes', '1', '2',
                '--json'])
    out = capsys.readouterr().out
    figures = json.loads(out.splitlines()[-1])
    assert figures['processes'] == [1, 2] and len(figures['seconds']) == 2 and figures['same_csv'] is True
    assert set(figures['ask_seconds']) == {'bayesian', 'bayesian-library', 'tpe', 'gp', 'hyperband'}  # the adaptive
    assert all(seconds > 0 for seconds in [*figures['seconds'], *figures['ask_seconds'].values()])
    assert 'wall time by the processes proposing (the same CSV each time: yes)' in out
