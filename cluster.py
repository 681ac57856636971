"""Training on a Ray cluster (test.py --ray): join one, and train populations on its workers, each worker an actor
that loads the dataset once.

There is one worker per GPU (--device cuda), or per --ray-worker-cpus CPUs of a node, and populations go to the
workers in turn. A worker that dies (a killed process, a lost node) is started again by Ray, which then trains its
populations again.
"""
import contextlib
import logging
import os
import re
import socket
import sys
from unittest import mock

import ray
import torch

import dataset_management
import network
import stopping

CONNECT_SECONDS = 30  # a HOST:PORT where nothing answers within this is refused
WORKER_CPUS = 4  # on CPU, without --ray-worker-cpus: a worker's CPUs (or the largest node's, where it has fewer)
RETRIES = 3  # a population whose worker dies is trained again this many times at most
ROOT = os.path.dirname(os.path.abspath(__file__))  # this checkout: every node needs it at the same path


class ClusterError(Exception):
    """The cluster cannot be joined, or has no worker that fits (one line)."""


@contextlib.contextmanager
def core_logs_silenced():
    """Standard error (file descriptor 2, where Ray's C++ core logs) goes to the null device while the block runs."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def check_address(address):
    """ClusterError unless `address` is auto, local or HOST:PORT with a host name (or IP address) and a port."""
    if address in ('auto', 'local'):
        return
    host, _, port = address.rpartition(':')
    if not host or not re.fullmatch('[0-9]+', port):
        raise ClusterError(f'--ray {address!r} is not allowed: use auto, local or HOST:PORT')
    if not 1 <= int(port) <= 65535:
        raise ClusterError(f'--ray {address}: port {port} is out of range (1 to 65535)')
    try:  # as the resolver takes it: labels of 1 to 63 characters, 253 in all
        valid = len(host.encode('idna')) <= 253
    except UnicodeError:  # an empty label, or one too long
        valid = False
    if not valid:
        raise ClusterError(f'--ray {address}: {host!r} is not a host name')


def join(address):
    """ray.init for `address`: 'auto' (the cluster running on this machine), 'local' (start one on it) or
    HOST:PORT (its head). ClusterError if that fails, or if nothing answers at HOST:PORT within CONNECT_SECONDS.
    A stop signal during ray.init takes effect once it returns, and then shuts down what it started."""
    check_address(address)
    if address not in ('auto', 'local'):
        host, _, port = address.rpartition(':')
        try:  # ray.init would wait for minutes on an address where nothing answers
            socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
        except OSError as error:
            raise ClusterError(f'--ray {address}: no Ray cluster answers there within {CONNECT_SECONDS} s '
                               f'({error.strerror or error})') from None
    # The workers import this checkout's modules; Ray's own log lines go to its log folder, not to the terminal
    settings = dict(runtime_env={'env_vars': {'PYTHONPATH': ROOT}}, log_to_driver=False,
                    logging_level=logging.ERROR)
    try:
        # ray.init starts by making sys.exit its SIGTERM handler, which a SIGTERM midway turns into a driver that
        # goes on or ends without a word: kept out (the version is pinned), the stop is deferred as the others
        with stopping.deferred(), mock.patch.object(ray._private.utils, 'set_sigterm_handler', lambda _: None):
            with core_logs_silenced():  # Ray's core writes a line to the terminal each time it retries
                if address == 'local':
                    ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, **settings)
                else:
                    ray.init(address=address, **settings)
    except (ConnectionError, RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'
        raise ClusterError(f'--ray {address}: cannot join the Ray cluster ({reason})') from None
    except BaseException:  # a stop: no Ray process started for this run may outlive it
        ray.shutdown()
        raise


@ray.remote(max_restarts=-1, max_task_retries=RETRIES)
class Worker:
    """Trains populations on one GPU or a few CPUs, on the dataset it loads once."""

    def __init__(self, data, threads):
        if threads:
            torch.set_num_threads(threads)
        self.data, self.splits = data, None

    def load(self):
        """Load the dataset (DatasetError naming the node if it is missing there, cannot be used or is too small
        for the validation size); return this worker's device as results name it."""
        if self.splits is None:
            try:
                self.splits = dataset_management.load_splits(**self.data)
            except (ValueError, dataset_management.DatasetError) as error:
                raise dataset_management.DatasetError(f'on node {os.uname().nodename}: {error}') from None
        return network.device_name(self.data['device'])

    def train(self, train, rows, args):
        """train(rows, splits, args, progress=False): the rows' scores."""
        self.load()
        return train(rows, self.splits, args, progress=False)


def connect(address, train, args, fail):
    """Join the Ray cluster at `address`, start its workers and have each load the dataset; return a RayTraining
    that runs train(rows, splits, args, progress=False) on them. ClusterError if the cluster cannot be joined or
    has no node with a GPU (--device cuda) or with a worker's CPUs; fail(message) if a worker cannot load the
    dataset or training on the cluster fails."""
    join(address)
    nodes = [node['Resources'] for node in ray.nodes() if node['Alive']]
    cuda = torch.device(args.device).type == 'cuda'
    if cuda:
        per_node, resources, fits = [int(node.get('GPU', 0)) for node in nodes], dict(num_gpus=1, num_cpus=1), 'GPU'
    else:
        cpus = args.ray_worker_cpus or min(WORKER_CPUS, max(int(node.get('CPU', 0)) for node in nodes))
        per_node, resources, fits = ([int(node.get('CPU', 0)) // max(cpus, 1) for node in nodes],
                                     dict(num_cpus=cpus), f'{cpus} CPUs')
    if not sum(per_node):
        ray.shutdown()
        missing = f'no GPU for --device {args.device}' if cuda else f'no node with the {fits} of a worker'
        raise ClusterError(f'--ray {address}: the cluster has {missing}')
    # Inside a worker its GPU is the only one it sees: cuda, whatever cuda:N the driver was given
    data = dict(dataset=args.dataset, data_dir=os.path.abspath(args.data_dir), validation_size=args.validation_size,
                device='cuda' if cuda else 'cpu', training_size=args.training_size)
    workers = [Worker.options(**resources).remote(data, None if cuda else resources['num_cpus'])
               for _ in range(sum(per_node))]
    device_name = ', '.join(sorted(set(wait([worker.load.remote() for worker in workers], fail))))
    return RayTraining(workers, train, args, fail, device_name=device_name,
                       description=f'Ray cluster {address}: nodes {len(nodes)}, workers {len(workers)} (one per '
                                   f'{fits}), training on {device_name}')


def wait(reference, fail):
    """ray.get(reference), any failure on the cluster ending the run with fail(one line)."""
    try:
        return ray.get(reference)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, dataset_management.DatasetError):
            fail(str(error.cause))
        raise error.cause from None  # the worker's own exception, as if it had run here
    except ray.exceptions.RayError as error:  # a worker that died more than RETRIES times, a lost node, ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'
        fail(f'training on the Ray cluster failed ({type(error).__name__}: {reason}); run the same command again '
             'to resume')


class RayTraining:
    """Trains rows' networks on the cluster's workers, in turn: submit() starts them at once, so that the populations
    started before the first is waited for train in parallel. `device_name`: the workers' devices, as results name
    them; `description`: the cluster in one line."""

    def __init__(self, workers, train, args, fail, *, device_name, description):
        self.workers, self.train, self.args, self.fail = workers, train, args, fail
        self.device_name, self.description = device_name, description
        self.started = 0

    def submit(self, rows):
        """Submit the training of the rows' networks to the next worker; return a function that waits for their
        scores."""
        worker = self.workers[self.started % len(self.workers)]
        self.started += 1
        reference = worker.train.remote(self.train, rows, self.args)
        return lambda: wait(reference, self.fail)
