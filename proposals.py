"""The adaptive searches' proposals, here or in worker processes: between rounds each search asks for its next points
from its own rows alone, so the searches of a run can be spread over processes, each worker owning its share for the
whole run (rows go to it, points come back). Every search proposes on one thread, here as in a worker: a Gaussian
process of 30 evaluations or more fitted with another number of BLAS threads differs in its last digits, and so its
next point; so the CSV is the same whatever the number of processes, and of the machine's cores.
"""
import contextlib
import multiprocessing
import pickle
import signal
import time

import threadpoolctl
import torch

import stopping


# By default the searches propose here until a round of their proposals takes this long, then in the workers: a worker
# costs seconds to start (it imports the optimizers' libraries), which a small run would spend for nothing
HANDOFF_SECONDS = 1.0


class ProposalsError(Exception):
    """A worker process that proposed points died (killed, out of memory); one line naming a search it held."""


@contextlib.contextmanager
def one_thread():
    """numpy's and scipy's BLAS and torch (Optuna's Gaussian process computes with it) on one thread, as before
    afterwards."""
    threads = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(1, user_api='blas'):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


class Here:
    """The searches ((method, repetition, search) triples) proposing in this process."""

    def __init__(self, adaptive):
        self.adaptive = adaptive

    def ask(self):
        """Each search's next points ([] once its budget is spent), proposed on one thread."""
        with one_thread():
            return [search.ask() for _, _, search in self.adaptive]

    def tell(self, rows):
        """Tell each search its scored rows of the last ask, where it asked any."""
        for (_, _, search), told in zip(self.adaptive, rows):
            if told:
                search.tell(told)

    def pickled(self):
        """Each search pickled, as search_states saves it."""
        return [pickle.dumps(search, pickle.HIGHEST_PROTOCOL) for _, _, search in self.adaptive]

    def close(self):
        pass


def serve(connection):
    """A worker: the searches it is handed, asked, told and pickled as the driver says, until the driver's end of the
    pipe closes (the driver stopped, or died). Stop signals are the driver's to answer; one BLAS thread per worker."""
    for number in stopping.SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    owned = Here([])
    while True:
        try:
            request, argument = connection.recv()
        except EOFError:
            return
        try:
            if request == 'take':
                searches = [(None, None, pickle.loads(data)) for data in argument]  # their names are the driver's
                owned, reply = Here(searches), None
            elif request == 'tell':
                reply = owned.tell(argument)
            else:  # 'ask', 'pickled'
                reply = getattr(owned, request)()
        except Exception as error:  # noqa: BLE001 (raised again in the driver, as one process would raise it)
            reply = error
        connection.send(reply)


class Workers:
    """The searches ((method, repetition, search) triples) shared round-robin among `processes` worker processes
    (so that each gets its share of every method), each owning its share for the whole run."""

    def __init__(self, adaptive, processes):
        context = multiprocessing.get_context('spawn')  # a fork would copy the driver's torch threads' state
        self.names = [f'{method} repetition {repetition}' for method, repetition, _ in adaptive]
        self.shares = [list(range(worker, len(adaptive), processes)) for worker in range(processes)]
        self.workers = []
        for _ in range(processes):
            driver_end, worker_end = context.Pipe()
            process = context.Process(target=serve, args=(worker_end,), daemon=True)
            process.start()
            worker_end.close()
            self.workers.append((process, driver_end))
        self.round_trip('take', [[pickle.dumps(adaptive[index][2], pickle.HIGHEST_PROTOCOL) for index in share]
                                 for share in self.shares])

    def round_trip(self, request, arguments):
        """Send each worker its argument, then gather their replies, in the searches' order; ProposalsError if a
        worker died."""
        for (process, connection), argument, share in zip(self.workers, arguments, self.shares):
            try:
                connection.send((request, argument))
            except OSError:
                self.fail(process, share)
        replies = [None] * len(self.names)
        for (process, connection), share in zip(self.workers, self.shares):
            try:
                reply = connection.recv()
            except (EOFError, OSError):
                self.fail(process, share)
            if isinstance(reply, Exception):
                raise reply
            for index, item in zip(share, reply or []):
                replies[index] = item
        return replies

    def fail(self, process, share):
        process.join(timeout=5)
        raise ProposalsError(f'the process proposing the points of {self.names[share[0]]} and {len(share) - 1} other '
                             f'searches ended (exit status {process.exitcode}): the rows recorded are kept, and the '
                             'same command resumes the run') from None

    def ask(self):
        return self.round_trip('ask', [None] * len(self.workers))

    def tell(self, rows):
        self.round_trip('tell', [[rows[index] for index in share] for share in self.shares])

    def pickled(self):
        return self.round_trip('pickled', [None] * len(self.workers))

    def close(self):
        """End the workers: their pipes closed, each leaves its loop (killed where it does not at once)."""
        for process, connection in self.workers:
            connection.close()
        for process, _ in self.workers:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()


class HereUntilSlow:
    """The searches proposing here until a round of asks takes HANDOFF_SECONDS, then handed to Workers (their state
    pickled whole, so they go on as they would have here)."""

    def __init__(self, adaptive, processes):
        self.proposer, self.processes = Here(adaptive), processes

    def ask(self):
        start = time.perf_counter()
        points = self.proposer.ask()
        if isinstance(self.proposer, Here) and time.perf_counter() - start > HANDOFF_SECONDS:
            self.proposer = Workers(self.proposer.adaptive, self.processes)
        return points

    def __getattr__(self, name):  # tell, pickled, close: the current proposer's
        return getattr(self.proposer, name)


def proposing(adaptive, processes, *, at_once):
    """The searches' proposer: here, where there is one process (or one search); else in `processes` workers (at most
    one per search), from the first round if `at_once`, otherwise once a round's proposals here are slow."""
    processes = min(processes, len(adaptive))
    if processes < 2:
        return Here(adaptive)
    return Workers(adaptive, processes) if at_once else HereUntilSlow(adaptive, processes)
