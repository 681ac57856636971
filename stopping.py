"""How the scripts stop when asked: Ctrl-C (SIGINT), SIGTERM (kill, batch schedulers such as SLURM, systemd) and SIGHUP
(a closed terminal) all end a run with one line and exit status 128 + the signal's number (130, 143, 129).

While the libraries load, a signal ends the process at once (`exit_while_starting`); afterwards it raises `Stopped`
in the main thread (`raise_when_stopped`), so that the script can say what it saved and release what it holds.
This module imports nothing but the standard library: it must be usable before torch loads.
"""
import contextlib
import os
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


received = None  # the number of the stop signal that arrived, once one has


class Stopped(KeyboardInterrupt):
    """One of SIGNALS arrived. A KeyboardInterrupt, so that libraries treat every stop as they treat Ctrl-C (Ray's
    ray.get raises a KeyboardInterrupt of its own in its place)."""


def exit_status():
    """The exit status of a stopped script: 128 + the number of the signal that stopped it (130 for Ctrl-C, also
    when a KeyboardInterrupt came without one)."""
    return 128 + (received or signal.SIGINT)


def exit_while_starting(what):
    """From now on a stop signal writes 'PROGRAM: interrupted while starting; WHAT' and exits at once: an exception
    raised into a library's initialisation (torch's C++) can abort the interpreter instead."""
    def exit_at_once(signal_number, _):
        with contextlib.suppress(OSError):  # a closed terminal (SIGHUP) takes no line
            os.write(2, f'{sys.argv[0]}: interrupted while starting; {what}\n'.encode())
        os._exit(128 + signal_number)
    for number in SIGNALS:
        signal.signal(number, exit_at_once)


def raise_when_stopped(stopped=Stopped):
    """From now on a stop signal raises stopped(its name) in the main thread, once: later signals are ignored, so
    that a second Ctrl-C cannot interrupt the exit (atexit handlers, Ray's shutdown) with a traceback."""
    def stop(signal_number, _):
        global received
        received = signal_number
        for number in SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        raise stopped(signal.Signals(signal_number).name)
    for number in SIGNALS:
        signal.signal(number, stop)


def default_when_stopped():
    """From now on a stop signal ends the process at once, as it would without handlers: for the exit of a script
    whose work is done (atexit handlers, Ray's shutdown), which an exception could only interrupt with a traceback."""
    for number in SIGNALS:
        signal.signal(number, signal.SIG_DFL)


@contextlib.contextmanager
def handlers_kept():
    """The stop signals' handlers as they are now, restored when the block ends (ray.init installs its own); unless
    a stop arrived in it (raise_when_stopped's handlers then ignore the signals), so that none interrupts the exit."""
    handlers = {number: signal.getsignal(number) for number in SIGNALS}
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            for number, handler in handlers.items():
                signal.signal(number, handler)


@contextlib.contextmanager
def deferred():
    """A stop signal while the block runs takes effect when it ends, as raise_when_stopped's handlers, restored
    then, would have it (for ray.init, which a stop midway leaves with processes that nothing ends)."""
    arrived = []
    try:
        with handlers_kept():
            for number in SIGNALS:
                signal.signal(number, lambda number, _: arrived.append(number))
            yield
    finally:  # a stop outweighs what the block raised
        if arrived:
            signal.raise_signal(arrived[0])
