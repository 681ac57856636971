"""A refactor changes no number: test.py's commands below write, every column but `seconds`, the CSVs that earlier
code wrote on this project's development machines, one folder each: tests/data/unchanged/ (commit de4a52b, an Intel
Xeon), tests/data/unchanged-amd-epyc/ (commit 9cc947c, before Hyperband, an AMD EPYC) and
tests/data/unchanged-amd-epyc-7-methods/ (commit 2ecbc9c, every method, before the datasets became records) and
tests/data/unchanged-amd-epyc-avx2/ (commit d1febcd, an AMD EPYC with AVX2 only, every method, --schedule rounds
and a run on the digits table, before the run's settings became one record) and
tests/data/unchanged-amd-epyc-family-26/ (commit 749dba2, an AMD EPYC of family 26 with AVX-512, the same commands,
before issue 40's last shortening). The CPU
decides the last digits, so a machine of another kind skips them; where a folder also names the machine as the
searches' model fits see it (results.machine: the BLAS cores too, on which the guided searches' points depend), that
must match as well."""
import json
from pathlib import Path

import pytest
import torch

import results
import searches
import test as experiment
from conftest import ROOT, read_rows, without_seconds, write_cifar10

THREADS = 2  # torch's CPU threads when the references were written: the reductions' order depends on it
DIGITS = ['--dataset', 'digits', '--validation-size', '900', '--evaluations', '6', '--init-points', '2',
          '--repetitions', '2', '--lr-scale', 'log', '--learning-rate-bounds', '0.0001', '10000',
          '--quiet']  # some networks diverge, some learn
FOUR_METHODS = DIGITS + ['--method', 'bayesian,bayesian-library,sobol,random', '--epochs', '2']
SEVEN_METHODS = DIGITS + ['--method', 'bayesian,bayesian-library,tpe,gp,sobol,random,hyperband', '--epochs', '3']
COMMANDS = {'digits-after-10': FOUR_METHODS + ['--schedule', 'after', '--population', '10'],
            'digits-rounds-10': FOUR_METHODS + ['--schedule', 'rounds', '--population', '10'],
            'digits-after-1': FOUR_METHODS + ['--population', '1'],
            'digits-7-methods-after-10': SEVEN_METHODS + ['--population', '10'],
            'digits-7-methods-after-1': SEVEN_METHODS + ['--population', '1'],
            'digits-table-8-methods': ['--dataset', 'digits', '--epochs', '50', '--method', ','.join(searches.METHODS),
                                       '--evaluations', '9', '--init-points', '3', '--repetitions', '2', '--table',
                                       str(ROOT / 'tables' / 'digits.csv'), '--quiet'],
            'cifar10-after-10': ['--dataset', 'cifar10', '--validation-size', '48', '--method', 'bayesian,sobol',
                                 '--evaluations', '4', '--init-points', '2', '--epochs', '2', '--repetitions', '2',
                                 '--lr-scale', 'log', '--learning-rate-bounds', '0.0001', '10000', '--quiet']}
REFERENCES = sorted(path for path in (Path(__file__).parent / 'data').glob('unchanged*/*.csv'))


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


@pytest.mark.parametrize('reference', REFERENCES, ids=lambda path: f'{path.parent.name}/{path.stem}')
def test_the_same_command_writes_the_csv_of_the_code_before(reference, tmp_path, monkeypatch, two_threads):
    written_on = json.loads((reference.parent / 'machine.json').read_text())
    here = {'machine': machine(), 'models': results.machine()}
    differing = [name for name in here if name in written_on and written_on[name] != here[name]]
    if differing:
        pytest.skip(f'{reference.parent.name} was written on {written_on[differing[0]]} ({differing[0]}), this is '
                    f'{here[differing[0]]}')
    command = COMMANDS[reference.stem]
    if reference.stem.startswith('cifar10'):
        write_cifar10(tmp_path, monkeypatch, batch_size=48, test_size=64)
    experiment.main(command + ['--data-dir', str(tmp_path), '--output', str(tmp_path / 'results.csv')])
    rows, expected = without_seconds(read_rows(tmp_path / 'results.csv')), without_seconds(read_rows(reference))
    if 'epochs' not in expected[0]:  # written in results format 2, before the bracket, configuration, epochs columns
        epochs = command[command.index('--epochs') + 1]
        assert all((row.pop('bracket'), row.pop('configuration'), row.pop('epochs')) == ('', '', epochs)
                   for row in rows)
    assert rows == expected
