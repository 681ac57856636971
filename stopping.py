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


class Stopped(KeyboardInterrupt):
    """One of SIGNALS arrived; `status` is the exit status it asks for (128 + its number). A KeyboardInterrupt, so
    that libraries treat every stop as they treat Ctrl-C."""

    def __init__(self, signal_number):
        super().__init__(signal.Signals(signal_number).name)
        self.status = 128 + signal_number


def exit_while_starting(what):
    """From now on a stop signal writes 'PROGRAM: interrupted while starting; WHAT' and exits at once: an exception
    raised into a library's initialisation (torch's C++) can abort the interpreter instead."""
    def exit_at_once(signal_number, _):
        os.write(2, f'{sys.argv[0]}: interrupted while starting; {what}\n'.encode())
        os._exit(128 + signal_number)
    for number in SIGNALS:
        signal.signal(number, exit_at_once)


def raise_when_stopped(stopped=Stopped):
    """From now on a stop signal raises stopped(signal number) in the main thread, once: later signals are ignored,
    so that a second Ctrl-C cannot interrupt the exit (atexit handlers, Ray's shutdown) with a traceback."""
    def stop(signal_number, _):
        for number in SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        raise stopped(signal_number)
    for number in SIGNALS:
        signal.signal(number, stop)


@contextlib.contextmanager
def handlers_kept():
    """The stop signals' handlers as they are now, restored when the block ends (ray.init installs its own)."""
    handlers = {number: signal.getsignal(number) for number in SIGNALS}
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
