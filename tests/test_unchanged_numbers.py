"""A refactor changes no number: test.py's commands below write, every column but `seconds`, the CSVs that earlier
code wrote on this project's development machines, one folder each: tests/data/unchanged/ (commit de4a52b, an Intel
Xeon) and tests/data/unchanged-amd-epyc/ (commit 9cc947c, before Hyperband, an AMD EPYC). The CPU decides the last
digits, so a machine of neither kind skips them."""
import json
from pathlib import Path

import pytest
import torch

import test as experiment
from conftest import read_rows, without_seconds, write_cifar10

REFERENCES = sorted((Path(__file__).parent / 'data').glob('unchanged*'))
THREADS = 2  # torch's CPU threads when the references were written: the reductions' order depends on it
DIGITS = ['--dataset', 'digits', '--validation-size', '900', '--method', 'bayesian,bayesian-library,sobol,random',
          '--evaluations', '6', '--init-points', '2', '--epochs', '2', '--repetitions', '2', '--lr-scale', 'log',
          '--learning-rate-bounds', '0.0001', '10000', '--quiet']  # some networks diverge, some learn
COMMANDS = {'digits-after-10': DIGITS + ['--schedule', 'after', '--population', '10'],
            'digits-rounds-10': DIGITS + ['--schedule', 'rounds', '--population', '10'],
            'digits-after-1': DIGITS + ['--population', '1'],
            'cifar10-after-10': ['--dataset', 'cifar10', '--validation-size', '48', '--method', 'bayesian,sobol',
                                 '--evaluations', '4', '--init-points', '2', '--epochs', '2', '--repetitions', '2',
                                 '--lr-scale', 'log', '--learning-rate-bounds', '0.0001', '10000', '--quiet']}


def machine():
    """The CPU as its rounding goes: its model, cache and instruction sets, and the kernels torch picks for it."""
    cpuinfo, l2 = Path('/proc/cpuinfo'), Path('/sys/devices/system/cpu/cpu0/cache/index2/size')
    if not cpuinfo.exists() or not l2.exists():
        return 'unknown (no /proc/cpuinfo)'
    fields = {}
    for line in cpuinfo.read_text().splitlines():  # the first processor's fields
        name, _, value = line.partition(':')
        fields.setdefault(name.strip(), value.strip())
    extensions = sorted(flag for flag in fields['flags'].split() if flag.startswith(('avx', 'amx', 'fma')))
    return (f'{fields["model name"]}, L2 {l2.read_text().strip()}, {" ".join(extensions)}, torch '
            f'{torch.backends.cpu.get_cpu_capability()}')


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('name', COMMANDS)
def test_the_same_command_writes_the_csv_of_the_code_before(name, tmp_path, monkeypatch, two_threads):
    written_on = {json.loads((folder / 'machine.json').read_text())['machine']: folder for folder in REFERENCES}
    if machine() not in written_on:
        pytest.skip(f'the reference CSVs were written on {" and ".join(written_on)}, this is {machine()}')
    reference = written_on[machine()]
    if name.startswith('cifar10'):
        write_cifar10(tmp_path, monkeypatch, batch_size=48, test_size=64)
    experiment.main(COMMANDS[name] + ['--data-dir', str(tmp_path), '--output', str(tmp_path / 'results.csv')])
    rows = without_seconds(read_rows(tmp_path / 'results.csv'))
    epochs = COMMANDS[name][COMMANDS[name].index('--epochs') + 1]
    assert all((row.pop('bracket'), row.pop('configuration'), row.pop('epochs')) == ('', '', epochs) for row in rows)
    assert rows == without_seconds(read_rows(reference / f'{name}.csv'))  # results format 3 adds those three columns
