"""One writer per folder: an OS-level lock (``fcntl.flock``) on a lock file, ``<folder>/.lock``.

The lock belongs to the open file, so the kernel releases it when the process ends in any way, a SIGKILL
included: a killed writer never leaves a stale lock, only a stale file, which the next writer takes
over. While held, the file names the holder (pid, host, start time); a second writer stops at once
with :class:`FolderLocked`, whose message names the folder and the holder, and the command line exits
with :data:`EXIT_LOCKED`. A writer that releases the lock removes the file, so a finished folder holds
no trace of it. Readers (evaluate, verify, the notebooks' plots and tables) never take it.

Writers that take it: every training run folder (:func:`srlib.train.train`, a shared warm-up's folder
included, for which a run *waits* instead of stopping), a data root being filled (``srlib download``),
the GPU pack (``srlib gpu-pack``) and run_all.sh's staging folder, whose lock file is
``.staging/<profile>.lock``, held for the script's life through this module's command line::

    exec 9<>.staging/demo.lock && python -m srlib.lock --fd 9 --pid $$ .staging/demo || exit 75
"""
import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

EXIT_LOCKED = 75        # EX_TEMPFAIL (sysexits.h): another process writes the folder; try again later
LOCK_NAME = ".lock"


class FolderLocked(RuntimeError):
    """Another process writes this folder; the message names the folder and the holder."""

    def __init__(self, folder, holder):
        self.folder, self.holder = str(folder), holder
        super().__init__(f"{folder} is being written by another process ({holder or 'holder not yet recorded'}); "
                         f"nothing was changed: wait for it to finish (or stop it), then run again")


def holder(pid=None):
    """The line a lock file holds: pid, host and start time of the writer."""
    return (f"pid {pid or os.getpid()} on {socket.gethostname()}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S %z')}")


def _read(fd):
    return os.pread(fd, 4096, 0).decode(errors="replace").strip()


def take(fd, what, pid=None, wait=False, say=None):
    """Lock the open lock file ``fd`` (of the folder ``what``) and write the holder into it. Held by another
    process: :class:`FolderLocked`, or with ``wait`` a message through ``say`` (default: to stderr) and a
    wait until it is released."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not wait:
            raise FolderLocked(what, _read(fd)) from None
        (say or _stderr)(f"waiting for {what}: it is being written by another process ({_read(fd)})")
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, (holder(pid) + "\n").encode(), 0)


def _stderr(msg):
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def lock(folder, wait=False, say=None):
    """Hold the lock of ``folder`` (created if missing) while the ``with`` block runs; see the module
    docstring. ``wait``: wait for another holder (with a message) instead of raising :class:`FolderLocked`."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            take(fd, folder, wait=wait, say=say)
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass                # the holder we waited for removed the file: lock the new one
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)     # before unlocking: a waiter that holds the old file tries again
        os.close(fd)


def main(argv=None):
    """``python -m srlib.lock --fd N [--pid PID] FOLDER``: lock the lock file open as descriptor N (inherited
    from a shell script, which keeps holding it after this process ends) for FOLDER; exit 75 when held."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m srlib.lock", description=main.__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--pid", type=int, default=None, help="the holder to record (default: this process)")
    args = p.parse_args(argv)
    try:
        take(args.fd, args.folder, pid=args.pid)
    except FolderLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_LOCKED
    return 0


if __name__ == "__main__":
    sys.exit(main())
