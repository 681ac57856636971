"""The searches' states between rounds: after each round run_in_rounds pickles its searches beside the results file
(results.searches.pickle), so that a resumed run continues them where they stopped rather than replaying every model
fit they made (nearly all the time of a study on a benchmark table); removed once the searches end."""
import contextlib
import os
import pickle
from typing import NamedTuple

import files


class Rounds(NamedTuple):
    """run_in_rounds' state after `done` rounds of the searches `searches_to_run` ((method, repetition) pairs): its
    adaptive searches ((method, repetition, search) triples), their rows so far, and how many planned rows it has
    scored."""
    searches_to_run: list
    adaptive: list
    adaptive_rows: list
    shared: int
    done: int


def save(output, rounds):
    """Save the Rounds whole, replacing the last (files.WriteError if that fails)."""
    files.write_whole(files.searches_path(output), lambda file: pickle.dump(rounds, file, pickle.HIGHEST_PROTOCOL),
                      binary=True)


def load(output, searches_to_run):
    """The Rounds saved last if they are those of these searches, else None. A file that cannot be read back (from
    another version of the code, or edited) is None too: the resume then replays the searches, as without it."""
    try:
        with open(files.searches_path(output), 'rb') as file:
            rounds = pickle.load(file)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 (unpickling can raise anything; the replay does not need the file)
        return None
    return rounds if isinstance(rounds, Rounds) and rounds.searches_to_run == searches_to_run else None


def remove(output):
    """Remove the saved state, if any."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(files.searches_path(output))
