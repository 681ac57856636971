"""The searches' states between rounds: after each round run_in_rounds pickles its searches beside the results file
(results.searches.pickle), so that a resumed run continues them where they stopped rather than replaying every model
fit they made (nearly all the time of a study on a benchmark table); removed once the searches end.

A pickle runs code as it is read, so a state is read only if this user's code wrote it: each file is signed with an
HMAC under a key kept outside any results folder (KEY_FILE, made on first use, readable by its owner alone), and it
belongs to one run: it names the hash of the run's configuration, and a resume uses it only for the same."""
import contextlib
import hashlib
import hmac
import json
import os
import pickle
import secrets
from typing import NamedTuple

import files

MAGIC = b'searches-state 2\n'  # then the signature's 32 bytes, then the pickle
KEY_FILE = 'searches-state.key'  # in the user's configuration folder: $XDG_CONFIG_HOME/bartoli-hpo or ~/.config/...
KEY_FOLDER = 'bartoli-hpo'


class Rounds(NamedTuple):
    """run_in_rounds' state after `done` rounds of the searches `searches_to_run` ((method, repetition) pairs) of the
    run whose configuration hashes to `run`: its adaptive searches ((method, repetition, search) triples, each search
    pickled when saved), their rows so far, and how many planned rows it has scored."""
    run: str
    searches_to_run: list
    adaptive: list
    adaptive_rows: list
    shared: int
    done: int


def run_hash(configuration):
    """What a state is kept for: the hash of the settings in the run's configuration (its devices and machines may
    grow)."""
    settings = {name: value for name, value in configuration.items() if name not in ('devices', 'machines')}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def key_path():
    folder = os.environ.get('XDG_CONFIG_HOME') or os.path.join(os.path.expanduser('~'), '.config')
    return os.path.join(folder, KEY_FOLDER, KEY_FILE)


def key(*, make):
    """This user's key (made, readable by its owner alone, if `make` and there is none); None if there is none."""
    path = key_path()
    if make and not os.path.exists(path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another run made it meanwhile: use that one
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'wb') as file:
                file.write(secrets.token_bytes(32))
    try:
        with open(path, 'rb') as file:
            return file.read()
    except FileNotFoundError:
        return None


def save(output, rounds):
    """Save the Rounds whole and signed, replacing the last (files.WriteError if that fails)."""
    data = pickle.dumps(rounds, pickle.HIGHEST_PROTOCOL)
    signature = hmac.new(key(make=True), data, hashlib.sha256).digest()
    files.write_whole(files.searches_path(output), lambda file: file.write(MAGIC + signature + data), binary=True)


def load(output, run, searches_to_run):
    """(the Rounds saved last for these searches of the run whose configuration hashes to `run`, None) or, where
    there is none to use, (None, why: a line, or None where there is no file). Nothing is unpickled unless its
    signature checks."""
    try:
        with open(files.searches_path(output), 'rb') as file:
            content = file.read()
    except FileNotFoundError:
        return None, None
    except OSError as error:
        return None, f'it cannot be read ({error.strerror})'
    signature, data = content[len(MAGIC):len(MAGIC) + 32], content[len(MAGIC) + 32:]
    secret = key(make=False)
    if not content.startswith(MAGIC) or secret is None or not hmac.compare_digest(
            signature, hmac.new(secret, data, hashlib.sha256).digest()):
        return None, f'it is not signed with the key of this user\'s runs, {key_path()}'
    try:
        rounds = pickle.loads(data)
        if not isinstance(rounds, Rounds) or rounds.run != run:
            return None, 'it belongs to a run of other settings'
        if rounds.searches_to_run != searches_to_run:
            return None, 'it holds other searches'
        return rounds._replace(adaptive=[(method, repetition, pickle.loads(search))
                                         for method, repetition, search in rounds.adaptive]), None
    except Exception:  # noqa: BLE001 (signed, but from another version of the code: the replay does not need it)
        return None, 'it was written by another version of this code'


def remove(output):
    """Remove the saved state, if any."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(files.searches_path(output))
