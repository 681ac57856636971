"""The searches' proposals in worker processes (proposals.py, --proposal-processes): the same rows whatever the number
of processes, a stop or a resume as in one process, and a worker that dies ends the run in one line, nothing
recorded lost."""
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TABLE_SETTINGS, read_rows, rows_in, small_run, without_seconds

import proposals
import searches
import test as experiment

ON_THE_TABLE = [*TABLE_SETTINGS, '--method', ','.join(searches.METHODS), '--evaluations', '9', '--init-points', '3',
                '--repetitions', '3', '--quiet']


@pytest.mark.parametrize('processes', [['--proposal-processes', '3'], []], ids=['3 from the start', 'the default'])
def test_every_method_on_a_table_writes_the_same_file_whatever_the_number_of_processes(processes, digits_table,
                                                                                      finished_run, tmp_path,
                                                                                      monkeypatch):
    alone = finished_run([*ON_THE_TABLE, '--table', str(digits_table), '--proposal-processes', '1'])
    handed_off, start = [], proposals.Workers.__init__
    monkeypatch.setattr(proposals, 'HANDOFF_SECONDS', 0)  # the default hands them to workers after the first round
    monkeypatch.setattr(proposals.Workers, '__init__',
                        lambda workers, adaptive, count: handed_off.append(count) or start(workers, adaptive, count))
    experiment.main([*ON_THE_TABLE, '--table', str(digits_table), *processes, '--output',
                     str(tmp_path / 'results.csv')])
    assert read_rows(tmp_path / 'results.csv') == read_rows(alone)  # every column: a table's seconds are 0
    assert handed_off == [3 if processes else len(os.sched_getaffinity(0))]


def test_real_training_writes_the_same_file_in_one_process_and_in_two(finished_run, tmp_path):
    run = small_run(method='bayesian,gp,sobol,hyperband', epochs=3, evaluations=4, training_size=300, quiet=True)
    alone = finished_run([*run, '--proposal-processes', '1'])
    experiment.main([*run, '--proposal-processes', '2', '--output', str(tmp_path / 'results.csv')])
    assert without_seconds(read_rows(tmp_path / 'results.csv')) == without_seconds(read_rows(alone))


def children(pid):
    """The processes whose parent is `pid`."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as file:
                    fields = file.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def test_a_killed_worker_ends_the_run_in_one_line_and_the_same_command_resumes_to_the_same_file(
        digits_table, finished_run, tmp_path):
    run = [*ON_THE_TABLE, '--table', str(digits_table)]
    alone = finished_run([*run, '--proposal-processes', '1'])
    arguments = [sys.executable, str(ROOT / 'test.py'), *run, '--proposal-processes', '2', '--output', 'results.csv']
    process = subprocess.Popen(arguments, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while process.poll() is None and rows_in(tmp_path / 'results.csv') < 40:  # some rounds recorded
        time.sleep(0.01)
    workers = children(process.pid)
    assert process.poll() is None and len(workers) >= 2, 'the run ended before a worker could be killed'
    os.kill(workers[-1], signal.SIGKILL)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 1 and stderr.count('\n') == 1, stderr
    assert 'the process proposing the points of ' in stderr and 'ended (exit status -9)' in stderr
    recorded = rows_in(tmp_path / 'results.csv')
    assert recorded >= 40
    result = subprocess.run(arguments, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert read_rows(tmp_path / 'results.csv') == read_rows(alone)
