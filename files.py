"""Writing the run's files whole or not at all: a file is written to NAME.partial beside it and then renamed over the
old one, so that a full disk, a lost permission or a stop mid-write leaves the previous version in place (and no
partial file), and the failure is one WriteError naming the file."""
import contextlib
import os


class WriteError(Exception):
    """A file of the run could not be written (the OSError, a full disk or a lost permission, is its cause); its
    previous version, if any, is as it was. One line."""

    def __init__(self, path, error):
        super().__init__(f'{path} cannot be written ({error.strerror or error})')


def partial_path(path):
    """Where a file is written before it replaces `path` whole: results.config.json.partial."""
    return os.fspath(path) + '.partial'


def write_whole(path, write, *, binary=False):
    """write(file) fills path's partial file, which then replaces `path` (synced to disk first); WriteError if
    that fails, the partial file removed and `path` as it was."""
    partial = partial_path(path)
    try:
        try:
            with open(partial, 'wb' if binary else 'w') as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
    except OSError as error:
        raise WriteError(path, error) from error
