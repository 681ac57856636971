"""stopping.py and the scripts' stops: a stop signal raises Stopped once, later ones are ignored, a deferred one takes
effect when its block ends, and network.py ends in one line with 128 + the signal."""
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

import network
import stopping


@pytest.mark.parametrize('stop_signal, status', [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stop_signal_raises_stopped_once_and_names_its_exit_status(stop_signal, status, stop_handlers):
    with pytest.raises(stopping.Stopped, match=signal.Signals(stop_signal).name):
        os.kill(os.getpid(), stop_signal)
        signal.pause()  # never returns without a signal
    assert stopping.exit_status() == status
    os.kill(os.getpid(), signal.SIGINT)  # ignored now: nothing may interrupt the exit
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_keyboard_interrupt_without_a_signal_exits_as_ctrl_c(monkeypatch):
    monkeypatch.setattr(stopping, 'received', None)
    assert stopping.exit_status() == 130


def test_a_stop_during_a_deferred_block_takes_effect_when_it_ends(stop_handlers):
    reached = []
    with pytest.raises(stopping.Stopped, match='SIGHUP'):
        with stopping.deferred():
            os.kill(os.getpid(), signal.SIGHUP)
            reached.append('the rest of the block')
    assert reached == ['the rest of the block'] and stopping.exit_status() == 129


def test_once_its_work_is_done_a_script_ends_at_once_when_stopped():
    code = ('import os, signal, stopping; stopping.default_when_stopped(); os.kill(os.getpid(), signal.SIGTERM); '
            'print(1)')
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == -signal.SIGTERM and result.stdout == result.stderr == ''


def test_network_py_stopped_while_training_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(stopping, 'received', signal.SIGTERM)

    def stopped(*_, **__):
        raise stopping.Stopped('SIGTERM')
    monkeypatch.setattr(network, 'train_and_evaluate', stopped)
    with pytest.raises(SystemExit) as exit:
        network.main(['--dataset', 'digits', '--learning-rate', '0.1', '--weight-decay', '0', '--epochs', '1'])
    stderr = capsys.readouterr().err
    assert exit.value.code == 143 and stderr.count('\n') == 1
    assert stderr.endswith(': interrupted: nothing was written (network.py writes no file)\n')
