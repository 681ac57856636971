"""The command line of test.py, network.py and bench.py: every bad value is refused in one line naming it, with exit
status 2 (a missing dataset too) and no traceback, before anything is trained or written; help shows every default."""
import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from conftest import ROOT, folder_without_permissions, read_rows, refused, run_script, snapshot

import bench
import network
import test as experiment

BAD_INPUTS = [
    (['--dataset', 'imagenet'], "invalid choice: 'imagenet'"),
    (['--method', 'lattice'], "invalid method 'lattice'"),
    (['--method', 'sobol,lattice'], "invalid method 'lattice'"),
    (['--method', 'sobol,'], "invalid method ''"),
    (['--method', 'random,sobol,random'], "method list 'random,sobol,random' names a method twice"),
    (['--lr-scale', 'cubic'], "invalid choice: 'cubic'"),
    (['--lr-scale', 'log', '--learning-rate-bounds', '0', '0.1'], '--lr-scale log needs a positive'),
    (['--learning-rate-bounds', '0.1', '0.0001'], '--learning-rate-bounds 0.1 0.0001'),
    (['--weight-decay-bounds', '0.001', '0'], '--weight-decay-bounds 0.001 0'),
    (['--weight-decay-bounds', '-1', '0.001'], '--weight-decay-bounds -1 0.001'),
    (['--learning-rate-bounds', '0', '1e300'], '--learning-rate-bounds 0 1e+300: the bounds must satisfy'),
    (['--weight-decay-bounds', '0', '1e39'], '<= 3.40282e+38'),
    (['--epochs', '0'], '--epochs 0'),
    (['--evaluations', '-3'], '--evaluations -3'),
    (['--repetitions', '0'], '--repetitions 0'),
    (['--population', '0'], '--population 0'),
    (['--schedule', 'later'], "invalid choice: 'later'"),
    (['--ray', 'local', '--ray-worker-cpus', '0'], '--ray-worker-cpus 0'),
    (['--evaluations', '4', '--init-points', '5'], '--init-points 5'),
    (['--init-points', '0'], '--init-points 0'),
    (['--method', 'sobol,tpe', '--evaluations', '4', '--init-points', '5'], '--init-points 5'),  # every guided method
    (['--method', 'gp', '--init-points', '0'], '--init-points 0'),
    (['--method', 'bayesian-library', '--init-points', '0'], '--init-points 0'),
    (['--validation-size', '50000'], '--validation-size 50000'),
    (['--dataset', 'digits', '--validation-size', '1437'], '--validation-size 1437'),
    (['--training-size', '40001'], '--training-size 40001 is out of range for cifar10: it must be between 1 and 40000'),
    (['--dataset', 'fashion-mnist', '--validation-size', '20000', '--training-size', '40001'],
     '--training-size 40001 is out of range for fashion-mnist: it must be between 1 and 40000'),
    (['--training-size', '0'], '--training-size 0 is out of range'),
    (['--training-size', 'all'], "invalid int or None value: 'all'"),
    (['--batch-size', '0'], '--batch-size 0'),
    (['--seed', '-1'], '--seed -1'),
    (['--device', 'tpu'], "--device 'tpu'"),
    (['--device', 'cuda:99'], '--device cuda:99'),
    (['--epochs', 'ten'], "invalid int value: 'ten'"),
    (['--ray', ''], "--ray '' is not an address"),
    (['--ray-worker-cpus', '2'], '--ray-worker-cpus 2 needs --ray'),
    (['--repetitions', '100000000'], 'is 5,000,000,000 evaluations: at most 200,000 in one run'),
    (['--method', 'sobol', '--evaluations', '100000000'], 'at most 200,000 in one run'),
    (['--method', 'bayesian', '--evaluations', '6000', '--repetitions', '1'], 'at most 5,000 (its model'),
    (['--method', 'tpe', '--evaluations', '6000', '--repetitions', '1'], 'too many for a guided search: at most 5,000'),
]


def test_an_unknown_method_is_one_line_naming_all_eight(capsys):
    stderr = refused(experiment.main, ['--method', 'sobol,asha'], capsys)
    assert ("invalid method 'asha' (choose from bayesian, bayesian-library, tpe, gp, sobol, random, grid, hyperband, "
            in stderr)


@pytest.fixture
def results_folder(tmp_path):
    """A folder holding a results file and a configuration (stand-ins), which a refused command must leave exactly
    as they are, even with --fresh."""
    (tmp_path / 'results.csv').write_text('method,repetition\n')
    (tmp_path / 'results.config.json').write_text('{}')
    return tmp_path


@pytest.mark.parametrize('arguments, named', BAD_INPUTS, ids=[' '.join(a) for a, _ in BAD_INPUTS])
@pytest.mark.parametrize('fresh', [[], ['--fresh']], ids=['', 'fresh'])
def test_bad_input_is_one_line_naming_the_value_and_nothing_is_written(arguments, named, fresh, results_folder,
                                                                      count_trained, capsys):
    before = snapshot(results_folder)
    stderr = refused(experiment.main, [*arguments, *fresh, '--output', str(results_folder / 'results.csv')], capsys)
    assert named in stderr
    assert snapshot(results_folder) == before and count_trained == []


def test_a_data_folder_that_cannot_be_read_is_refused_before_anything_is_written(tmp_path, capsys):
    before = snapshot(tmp_path)
    with folder_without_permissions() as folder:
        stderr = refused(experiment.main, ['--dataset', 'mnist', '--data-dir', folder,
                                           '--output', str(tmp_path / 'results.csv')], capsys)
    assert f'--data-dir {folder} cannot be read (Permission denied)' in stderr
    assert snapshot(tmp_path) == before


def test_a_validation_size_too_large_for_the_data_found_is_refused_before_anything_is_written(mnist_dir, capsys):
    folder, _ = mnist_dir  # 30 training images
    output = folder / 'run' / 'results.csv'
    output.parent.mkdir()
    output.write_text('an earlier run')  # --fresh would move it aside
    before = snapshot(folder)
    stderr = refused(experiment.main, ['--dataset', 'mnist', '--data-dir', str(folder), '--validation-size', '30',
                                       '--device', 'cpu', '--fresh', '--output', str(output)], capsys)
    assert '--validation-size 30 is out of range for mnist: it must be between 1 and 29' in stderr
    assert snapshot(folder) == before


@pytest.mark.parametrize('dataset, folder', [('mnist', 'MNIST'), ('fashion-mnist', 'FashionMNIST')])
def test_a_missing_dataset_says_which_files_to_put_where_and_nothing_is_written(dataset, folder, results_folder,
                                                                                  tmp_path_factory, no_downloads,
                                                                                  capsys):
    data = tmp_path_factory.mktemp('data')  # where torchvision makes the folders it would download into
    before = snapshot(results_folder)
    stderr = refused(experiment.main, ['--dataset', dataset, '--data-dir', str(data), '--fresh',
                                       '--output', str(results_folder / 'results.csv')], capsys)
    assert 'train-images-idx3-ubyte' in stderr and f'{data}/{folder}/raw/' in stderr
    assert snapshot(results_folder) == before and list(data.iterdir()) == []


def test_the_population_defaults_to_10_on_cpu():
    parser = experiment.build_parser()
    for arguments, population in [([], 10), (['--population', '3'], 3)]:
        args = parser.parse_args(['--device', 'cpu', *arguments])
        experiment.check_arguments(parser, args)
        assert args.population == population


def mostly(valid, invalid):
    """Command-line text: mostly a `valid` value, one time in ten an `invalid` one or text that is no number."""
    invalid = st.one_of(invalid, st.sampled_from(['', 'ten', '1,5', '-', '--epochs']))
    return st.integers(0, 9).flatmap(lambda draw: invalid if draw == 0 else valid).map(str)


def bounds(low, high):
    """Two bound texts: mostly LOW < HIGH within [low, high], one time in ten any two floats (NaN, infinite,
    negative, reversed or equal ones included)."""
    valid = st.lists(st.floats(low, high), min_size=2, max_size=2, unique=True).map(sorted)
    return st.integers(0, 9).flatmap(lambda draw: st.lists(mostly(st.floats(), st.nothing()), min_size=2,
                                                           max_size=2) if draw == 0 else valid.map(
                                                               lambda pair: [str(value) for value in pair]))


FLAGS = {'--evaluations': mostly(st.integers(2, 3), st.integers(-2, 0)),
         '--init-points': mostly(st.integers(1, 2), st.integers(-2, 0)),
         '--epochs': mostly(st.just(1), st.integers(-2, 0)),
         '--repetitions': mostly(st.integers(1, 2), st.integers(-2, 0)),
         '--population': mostly(st.integers(1, 4), st.integers(-2, 0)),
         '--batch-size': mostly(st.integers(8, 3000), st.integers(-2, 0)),
         '--validation-size': mostly(st.integers(1, 1436), st.sampled_from([-1, 0, 1437, 10 ** 6])),
         '--seed': mostly(st.integers(0, 2 ** 64), st.integers(-10, -1)),
         '--learning-rate-bounds': bounds(0, 1e3), '--weight-decay-bounds': bounds(0, 1e3),
         '--lr-scale': st.sampled_from(['linear', 'log']),
         '--method': st.sampled_from(['both', 'random', 'sobol,random', 'random,bayesian'])}


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(values=st.fixed_dictionaries(FLAGS))
def test_any_bounds_budgets_and_sizes_run_or_fail_with_one_line_and_exit_status_2(values):
    arguments = [text for flag, value in values.items() for text in (flag, *([value] if type(value) is str else value))]
    with tempfile.TemporaryDirectory() as folder:
        output = f'{folder}/results.csv'
        stdout, stderr = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                experiment.main(['--dataset', 'digits', '--device', 'cpu', *arguments, '--output', output])
        except SystemExit as exit:
            event('refused')
            assert exit.code == 2 and stderr.getvalue().count('\n') == 1 and ': error: ' in stderr.getvalue()
            assert os.listdir(folder) == []  # refused before anything was written
        else:
            event('ran')
            evaluations, repetitions = int(values['--evaluations']), int(values['--repetitions'])
            methods = 2 if values['--method'] == 'both' else len(values['--method'].split(','))
            assert len(read_rows(output)) == methods * repetitions * evaluations
            assert 'Table I:' in stdout.getvalue()


def test_bad_input_from_the_command_line_has_no_traceback(tmp_path):
    result = run_script('test.py', '--dataset', 'digits', '--learning-rate-bounds', '0.1', '0.01', cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ''
    assert result.stderr == ('test.py: error: --learning-rate-bounds 0.1 0.01: the bounds must satisfy 0 <= LOW < HIGH '
                             '<= 3.40282e+38\n')


def handles(pid, stop_signal):
    """Whether process `pid` has a handler of its own for `stop_signal` (its SigCgt mask in /proc)."""
    status = open(f'/proc/{pid}/status').read()
    return bool(int(re.search(r'SigCgt:\s*([0-9a-f]+)', status)[1], 16) >> (stop_signal - 1) & 1)


@pytest.mark.parametrize('script', ['test.py', 'network.py', 'bench.py'])
@pytest.mark.parametrize('stop_signal', [signal.SIGINT, signal.SIGTERM], ids=['Ctrl-C', 'SIGTERM'])
def test_a_stop_while_the_libraries_load_is_one_line_without_traceback(script, stop_signal, tmp_path):
    process = subprocess.Popen([sys.executable, str(ROOT / script), '--dataset', 'digits', '--device', 'cpu'],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while process.poll() is None and not handles(process.pid, stop_signal):
        time.sleep(0.001)
    time.sleep(0.2)  # into the imports: torch, bayes_opt, scikit-learn and optunity take seconds
    assert process.poll() is None
    process.send_signal(stop_signal)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + stop_signal and stdout == ''
    assert stderr.endswith(f'{script}: interrupted while starting; nothing was written\n') and stderr.count('\n') == 1
    assert os.listdir(tmp_path) == []


def test_ctrl_c_twice_in_a_row_is_still_one_line(tmp_path):
    process = subprocess.Popen([sys.executable, str(ROOT / 'test.py'), '--dataset', 'digits', '--epochs', '1',
                                '--output', 'results.csv'], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    while process.poll() is None and not (tmp_path / 'results.csv').exists():
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    time.sleep(0.02)
    assert process.poll() is None  # the second while the first is ending the run
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130 and stderr.count('\n') == 1 and stderr.startswith('test.py: interrupted: '), stderr


def test_help_lists_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        experiment.main(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    for flag, default in [('--dataset', 'cifar10'), ('--method', "('bayesian', 'sobol')"), ('--evaluations', '25'),
                          ('--init-points', '5'), ('--epochs', '50'), ('--repetitions', '10'),
                          ('--batch-size', '64'), ('--validation-size', 'None'), ('--seed', '0'),
                          ('--data-dir', 'data'), ('--output', 'results.csv'),
                          ('--learning-rate-bounds', '(0.0001, 0.1)'), ('--weight-decay-bounds', '(0, 0.001)'),
                          ('--population', 'None'), ('--lr-scale', 'linear')]:
        assert re.search(re.escape(flag) + r' .*?\(default: ' + re.escape(default) + r'\)', text), flag



def test_help_groups_the_flags_into_the_experiment_its_computation_and_its_files():
    sections = re.split(r'\n(?=\S.*:\n)', experiment.build_parser().format_help())
    groups = {section.split(':\n')[0]: re.findall(r'^  (--[a-z-]+)', section, flags=re.M) for section in sections}
    assert groups['the experiment (saved beside the results, and checked on resume)'] == [
        '--dataset', '--validation-size', '--training-size', '--batch-size', '--method', '--evaluations',
        '--init-points', '--epochs', '--repetitions', '--learning-rate-bounds', '--weight-decay-bounds', '--lr-scale',
        '--seed', '--curves', '--table']
    assert groups['how it is computed'] == ['--device', '--population', '--schedule', '--proposal-processes', '--ray',
                                           '--ray-worker-cpus']
    assert groups['the files'] == ['--data-dir', '--output', '--fresh', '--report', '--across', '--against',
                                  '--quiet']
    assert {'--device', '--data-dir'} <= set(re.findall(r'^  (--[a-z-]+)', network_help(), flags=re.M))


def network_help():
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit):
        network.main(['--help'])
    return out.getvalue()

@pytest.mark.parametrize('arguments, named', [
    (['--learning-rate', '0.01'], '--learning-rate and --weight-decay go together'),
    (['--learning-rate', '-0.01', '--weight-decay', '0'], '--learning-rate -0.01 and --weight-decay 0.0 must both'),
    (['--learning-rate', 'nan', '--weight-decay', '0'], '--learning-rate nan and --weight-decay 0.0 must both be'),
    (['--learning-rate', '0.01', '--weight-decay', 'inf'], '--weight-decay inf must both be finite'),
    (['--seed', '99999999999999999999'], '--seed 99999999999999999999 must be between 0 and 2**64 - 1'),
    (['--seed', '-1', '--learning-rate', '0.01', '--weight-decay', '0'], '--seed -1 must be between 0'),
    (['--learning-rate', '0.01', '--weight-decay', '0', '--epochs', '0'], '--epochs 0 must be a positive integer'),
    (['--batch-size', '0'], '--batch-size 0 must be a positive integer'),
    (['--device', 'tpu'], "--device 'tpu'"),
    (['--learning-rate', '1e39', '--weight-decay', '0'], "at most 3.40282e+38 (float32's largest)"),
    (['--learning-rate', '0.1', '--weight-decay', '4e38'], "at most 3.40282e+38 (float32's largest)"),
])
def test_network_py_refuses_bad_input_in_one_line(arguments, named, capsys):
    assert named in refused(network.main, ['--dataset', 'digits', *arguments], capsys)


@pytest.mark.parametrize('arguments, named', [(['--images', '0'], '--images 0'),
                                              (['--populations', '10', '0'], '--populations 0'),
                                              (['--batch-size', '-1'], '--batch-size -1'),
                                              (['--seed', '-1'], '--seed -1'),
                                              (['--device', 'tpu'], "--device 'tpu'"),
                                              (['--profile', '0'], '--profile 0'),
                                              (['--experiment', '--epochs', '0'], '--epochs 0'),
                                              (['--experiment', '--repetitions', '-2'], '--repetitions -2'),
                                              (['--experiment', '--images', '3'], '--images 3 is too few'),
                                              (['--experiment', '--profile', '3'], 'not allowed with argument'),
                                              (['--epochs', '3'], '--epochs has no effect without --experiment'),
                                              (['--schedule', 'rounds'], '--schedule has no effect without'),
                                              (['--experiment', '--populations', '2'],
                                               '--populations has no effect with --experiment'),
                                              (['--profile', '3', '--repetitions', '2'],
                                               '--repetitions has no effect with --profile'),
                                              (['--profile', '3', '--images', '64'], '--images has no effect with'),
                                              (['--profile', '3', '--json'], '--json has no effect with --profile'),
                                              (['--proposals', 'r.csv', '--epochs', '2'],
                                               '--epochs has no effect with --proposals'),
                                              (['--proposals', 'r.csv', '--dataset', 'mnist'],
                                               '--dataset has no effect with --proposals'),
                                              (['--dataset', 'svhn'], "invalid choice: 'svhn'"),
                                              (['--proposals', 'missing.csv'], 'missing.csv is not a table'),
                                              (['--proposals', 'r.csv', '--experiment'], 'not allowed with')])
def test_bench_py_refuses_bad_input_in_one_line_before_measuring(arguments, named, monkeypatch, capsys):
    for measure in ('model_epochs_per_second', 'profile_step', 'run_experiment'):
        monkeypatch.setattr(bench, measure, lambda *args, **kwargs: pytest.fail('measured'))
    assert named in refused(bench.main, arguments, capsys)
