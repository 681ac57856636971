"""Writing the run's files whole or not at all: a file is written to a partial file of its own beside it and then
renamed over the old one, so that a full disk, a lost permission or a stop mid-write leaves the previous version in
place (and no partial file), two writers of the same file (a run and a --report of it) each rename a whole file of
their own (the last rename wins), and the failure is one WriteError naming the file."""
import contextlib
import os
import tempfile

PARTIAL_SUFFIX = '.partial'
PARTIAL_NAME_CHARACTERS = 8  # tempfile's random part: results.summary.json.k3j9x_2q.partial
UMASK = os.umask(0o022)  # read (it can only be read by setting it), then restored
os.umask(UMASK)


class WriteError(Exception):
    """A file of the run could not be written (the OSError, a full disk or a lost permission, is its cause); its
    previous version, if any, is as it was. One line."""

    def __init__(self, path, error):
        super().__init__(f'{path} cannot be written ({error.strerror or error})')


def longest_partial_path(path):
    """The longest name a partial file of `path` can have (to check that a folder takes it)."""
    return f'{os.fspath(path)}.{"x" * PARTIAL_NAME_CHARACTERS}{PARTIAL_SUFFIX}'


def write_whole(path, write, *, binary=False):
    """write(file) fills a new partial file beside `path`, unique to this call, which then replaces `path` (synced to
    disk first); WriteError if that fails, the partial file removed and `path` as it was."""
    folder, name = os.path.split(os.fspath(path))
    try:
        descriptor, partial = tempfile.mkstemp(suffix=PARTIAL_SUFFIX, prefix=f'{name}.', dir=folder or '.')
    except OSError as error:
        raise WriteError(path, error) from error
    try:
        try:
            with open(descriptor, 'wb' if binary else 'w') as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(partial, 0o666 & ~UMASK)  # mkstemp makes it private; a file written whole gets open()'s mode
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
    except OSError as error:
        raise WriteError(path, error) from error
