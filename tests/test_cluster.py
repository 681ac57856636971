"""cluster.py and test.py --ray: populations trained on a local Ray cluster give the rows of a run without Ray, also
after a stopped or killed driver resumes with a worker killed while it trains (which costs only its population), and
a cluster that cannot be used is refused in one line before anything is written."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import ray
import torch
from conftest import ROOT, read_rows, refused, small_run, snapshot, sorted_rows, without_seconds

import cluster
import test as experiment

RUN = small_run(epochs=2)
# One worker with the threads of a run without Ray, hence its numbers to the last digit
THREADS = torch.get_num_threads()
RAY = ['--ray', 'local', '--ray-worker-cpus', str(THREADS)]


@pytest.fixture(scope='module')
def without_ray(finished_run):
    """The results file of RUN without Ray, in populations of 3."""
    return finished_run([*RUN, '--population', '3'])


@pytest.fixture
def no_cluster_left():
    """Leave no Ray cluster started by this process behind (test.py's own exit would stop it)."""
    yield
    ray.shutdown()


def ray_processes(name=None):
    """The process ids of Ray's processes (its workers, agents, raylet and GCS server), or of those whose command line
    holds `name` (ray::Worker.train: training a population)."""
    listing = subprocess.run(['ps', '-ww', '-eo', 'pid=,args='], capture_output=True, text=True).stdout
    names = [name] if name else ['ray::', 'raylet', 'gcs_server', f'{os.sep}ray{os.sep}']
    return [int(line.split()[0]) for line in listing.splitlines() if any(name in line for name in names)]


def run_killing_a_worker(command, cwd):
    """Run `command` to its end, killing the first Ray worker seen training: (the process's stdout, stderr and exit
    status, the killed worker's process id or None)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 120, None
    while killed is None and time.monotonic() < deadline and process.poll() is None:
        workers = ray_processes('ray::Worker.train')
        if workers:
            killed = workers[0]
            subprocess.run(['kill', '-KILL', str(killed)])
        time.sleep(0.01)
    stdout, stderr = process.communicate(timeout=300)
    return stdout, stderr, process.returncode, killed


# How long a stopped driver's Ray processes may take to go: seconds on a quiet machine, over 10 once with both cores
# busy (wait_until returns as soon as they are gone)
RAY_EXIT_SECONDS = 60


def wait_until(condition, seconds):
    """Whether condition() holds within `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def stop_when(process, ready, stop_signal, deadline_seconds=300):
    """Send `stop_signal` to `process` once ready() holds; return its stderr and exit status."""
    deadline = time.monotonic() + deadline_seconds
    while process.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.01)
    assert process.poll() is None and ready(), process.communicate(timeout=300)[1]  # not ended, not too slow
    process.send_signal(stop_signal)
    stderr = process.communicate(timeout=120)[1]
    return stderr, process.returncode


def test_a_stopped_driver_leaves_no_ray_process_and_resumes_even_when_a_worker_is_killed(without_ray, tmp_path):
    command = [sys.executable, str(ROOT / 'test.py'), *RUN, '--population', '3', *RAY, '--output', 'results.csv']
    output, running_before = tmp_path / 'results.csv', set(ray_processes())
    try:
        # SIGTERM (kill, SLURM, systemd; SIGHUP as it): Ray's own handler would abort the driver. A SIGKILLed driver
        # resumes as any killed run does (test_results_resume.py); its cluster's processes are left to `ray stop`
        process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr, status = stop_when(process, lambda: output.exists() and output.read_bytes().count(b'\n') > 3,
                                   signal.SIGTERM)
        assert 3 <= len(read_rows(output)) < 16
        assert status == 128 + signal.SIGTERM and stderr.count('\n') == 1, stderr
        assert stderr.endswith('of 16 evaluations are saved in results.csv; run the same command again to resume\n')
        # its cluster stopped with it
        assert wait_until(lambda: set(ray_processes()) <= running_before, RAY_EXIT_SECONDS)
        stdout, stderr, status, killed = run_killing_a_worker(command, tmp_path)  # resumed, a worker killed
        assert killed is not None, 'no worker was seen training'
        assert status == 0, stderr
        assert 'evaluations are recorded' in stdout
        assert f'Ray cluster local: nodes 1, workers 1 (one per {THREADS} CPUs), training on cpu (' in stdout
        # the killed worker's population trained again: the rows of a run without Ray
        assert without_seconds(sorted_rows(output)) == without_seconds(sorted_rows(without_ray))
    finally:
        for orphan in set(ray_processes()) - running_before:  # what a failing run left
            subprocess.run(['kill', '-KILL', str(orphan)])


def test_ctrl_c_while_ray_starts_its_cluster_is_one_line_and_leaves_no_ray_process(tmp_path):
    running_before = set(ray_processes())
    process = subprocess.Popen([sys.executable, str(ROOT / 'test.py'), *RUN, *RAY, '--output', 'results.csv'],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:  # stopped as ray.init starts the cluster's first process
        stderr, status = stop_when(process, lambda: set(ray_processes('gcs_server')) - running_before, signal.SIGINT)
        assert status == 130 and stderr.endswith('test.py: interrupted: nothing was written\n'), stderr
        assert wait_until(lambda: set(ray_processes()) <= running_before, RAY_EXIT_SECONDS)
        assert list(tmp_path.iterdir()) == []
    finally:
        for orphan in set(ray_processes()) - running_before:
            subprocess.run(['kill', '-KILL', str(orphan)])


@pytest.mark.parametrize('address, device, named', [
    ('nowhere', 'cpu', "--ray 'nowhere' is not allowed: use auto, local or HOST:PORT"),
    ('localhost:99999', 'cpu', '--ray localhost:99999: port 99999 is out of range (1 to 65535)'),
    ('a..b:1', 'cpu', "--ray a..b:1: 'a..b' is not a host name"),
    (f'{"x" * 64}.org:6379', 'cpu', f"'{'x' * 64}.org' is not a host name"),
    (f'{"host." * 60}org:6379', 'cpu', 'is not a host name'),
    ('127.0.0.1:1', 'cpu', '--ray 127.0.0.1:1: no Ray cluster answers there within 30 s'),
    pytest.param('local', 'cuda', '--ray local: the cluster has no GPU for --device cuda',
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has a GPU')),
])
def test_a_cluster_that_cannot_be_used_is_refused_in_one_line_before_anything_is_written(
        address, device, named, tmp_path, capsys, no_cluster_left):
    before = snapshot(tmp_path)
    arguments = [*RUN, '--device', device, '--ray', address, '--output', str(tmp_path / 'results.csv')]
    assert named in refused(experiment.main, arguments, capsys)
    assert snapshot(tmp_path) == before


def test_a_cluster_that_does_not_answer_is_given_up_after_the_connection_time(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cluster, 'CONNECT_SECONDS', 1)
    with socket.socket() as head:  # a head whose queue of connections is full: it never answers
        head.bind(('127.0.0.1', 0))
        head.listen(0)
        with socket.create_connection(head.getsockname()):
            address = '127.0.0.1:%d' % head.getsockname()[1]
            start = time.monotonic()
            stderr = refused(experiment.main, [*RUN, '--ray', address, '--output', str(tmp_path / 'results.csv')],
                             capsys)
    assert f'--ray {address}: no Ray cluster answers there within 1 s (timed out)' in stderr
    assert time.monotonic() - start < 10


def test_a_dataset_that_a_worker_cannot_load_ends_the_run_in_one_line_naming_the_node(mnist_dir, tmp_path, capsys,
                                                                                     no_cluster_left):
    folder, _ = mnist_dir  # 30 training images: too few for a validation size of 100
    output = folder / 'results.csv'
    with pytest.raises(SystemExit) as exit:
        experiment.main([*RUN, '--dataset', 'mnist', '--data-dir', str(folder), '--validation-size', '100', *RAY,
                         '--output', str(output)])
    stderr = capsys.readouterr().err
    assert exit.value.code == 1 and stderr.count('\n') == 1
    assert f'on node {os.uname().nodename}: --validation-size 100 is out of range for mnist' in stderr
    assert not output.exists()


def test_a_run_without_ray_does_not_import_it():
    imported = subprocess.run([sys.executable, '-c', 'import sys, test; print("ray" in sys.modules)'], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert imported.stdout == 'False\n', imported.stderr
