"""Folder trees of any depth, removed or measured through descriptors, never following a symlink.

A job folder left on disk (job_folder.py, where no tmpfs could be mounted) holds whatever the
kernel made there: 100,000 files, folders nested thousands deep, links to the host's files,
folders made unreadable. remove_tree and measure_tree walk it iteratively, with a handful of
descriptors open whatever the depth, each folder opened from its parent with O_NOFOLLOW and
the parent found again through "..", checked to be the same folder.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | os.PathLike) -> None:
    """Remove `path` and everything under it, however deep or wide, without following any
    symlink (a link is removed, never what it points to) and without crossing into another
    file system (a mount point inside is left, and so is its parent). A symlink given as `path`
    is removed itself. Iterative, with a handful of descriptors open whatever the depth, so
    that neither recursion nor the descriptor limit bounds it; a folder the kernel made
    unreadable (mode 0) is made ours (0700) first. A missing path is no error; other
    failures raise OSError once the rest is removed."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path.rstrip("/") or "/")
    parent_fd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            st = os.lstat(name, dir_fd=parent_fd)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            return
        errors = _walk(parent_fd, name, _remove_entry, _remove_folder)
        if errors:
            raise errors[0]
    finally:
        os.close(parent_fd)


def measure_tree(
    path: str | os.PathLike, *, max_bytes: int | None = None, max_entries: int | None = None
) -> tuple[int, int]:
    """(bytes allocated, files and folders) under `path`, itself excluded; symlinks counted,
    not followed; folders made unreadable are made ours (0700) first, so nothing hides from
    it. Stops early once over max_bytes or max_entries (the result is then over)."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path.rstrip("/") or "/")
    total = [0, 0]

    class _Over(Exception):
        pass

    def count(st: os.stat_result) -> None:
        total[0] += st.st_blocks * 512
        total[1] += 1
        if (max_bytes is not None and total[0] > max_bytes) or (max_entries is not None and total[1] > max_entries):
            raise _Over()

    def on_entry(dir_fd: int, entry: os.DirEntry) -> None:
        count(entry.stat(follow_symlinks=False))

    def on_folder(parent_fd: int, folder: str, st: os.stat_result, root: bool) -> None:
        if not root:
            count(st)

    parent_fd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _walk(parent_fd, name, on_entry, on_folder)
    except _Over:
        pass
    finally:
        os.close(parent_fd)
    return total[0], total[1]


def _remove_entry(dir_fd: int, entry: os.DirEntry) -> None:
    try:
        os.unlink(entry.name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _remove_folder(parent_fd: int, name: str, st: os.stat_result, root: bool) -> None:
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass


@dataclass
class _Level:
    name: str  # this folder's name in its parent
    identity: tuple[int, int]  # (st_dev, st_ino): checked when climbing back through ".."
    stat: os.stat_result
    pending: list[str]  # subfolders still to visit
    scanned: bool = False


def _walk(top_fd: int, name: str, on_entry, on_folder) -> list[OSError]:
    """Depth-first, post-order walk of folder `name` in top_fd: on_entry(dir_fd, entry) for
    every non-folder (symlinks included), on_folder(parent_fd, name, stat, root) for every
    folder once its content is done. One folder's descriptor is open at a time: a subfolder is
    opened from its parent (O_NOFOLLOW), the parent again through "..", checked to be the
    same folder. Returns the errors met (the walk goes on past each)."""
    errors: list[OSError] = []
    fd, st = _open_folder(top_fd, name)
    if fd is None:
        return [st] if isinstance(st, OSError) else []
    assert isinstance(st, os.stat_result)  # an opened folder comes with its stat
    device = st.st_dev
    stack = [_Level(name, (st.st_dev, st.st_ino), st, [])]
    try:
        while True:
            level = stack[-1]
            if not level.scanned:
                level.pending, level.scanned = _scan(fd, on_entry, errors), True
            if level.pending:
                child = level.pending.pop()
                child_fd, child_st = _open_folder(fd, child)
                if child_fd is None:
                    if isinstance(child_st, OSError):
                        errors.append(child_st)
                    continue
                assert isinstance(child_st, os.stat_result)  # an opened folder comes with its stat
                if child_st.st_dev != device:  # a mount point inside: not ours to walk
                    os.close(child_fd)
                    errors.append(OSError(errno.EXDEV, "another file system inside the tree", child))
                    continue
                os.close(fd)
                fd = child_fd
                stack.append(_Level(child, (child_st.st_dev, child_st.st_ino), child_st, []))
                continue
            # this folder is done: leave it, and remove or count it from its parent
            stack.pop()
            if not stack:
                os.close(fd)
                fd = None
                _call(on_folder, errors, top_fd, level.name, level.stat, True)
                return errors
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            up_st = os.fstat(up)
            os.close(fd)
            fd = up
            if (up_st.st_dev, up_st.st_ino) != stack[-1].identity:
                raise OSError(errno.ESTALE, "a folder moved while its tree was walked", level.name)
            _call(on_folder, errors, fd, level.name, level.stat, False)
    finally:
        if fd is not None:
            os.close(fd)


def _scan(fd: int, on_entry, errors: list[OSError]) -> list[str]:
    """Handle every non-folder in the folder at fd; return its subfolders' names."""
    folders = []
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.name)
                else:
                    on_entry(fd, entry)
            except OSError as err:
                if not isinstance(err, FileNotFoundError):
                    errors.append(err)
    return folders


def _call(function, errors: list[OSError], *args) -> None:
    try:
        function(*args)
    except OSError as err:
        errors.append(err)


def _open_folder(dir_fd: int, name: str) -> tuple[int | None, os.stat_result | OSError | None]:
    """(fd, stat) of subfolder `name`, never through a symlink; a folder the kernel made
    unreadable (mode 0) is made ours again first. (None, error) when it cannot be opened,
    (None, None) when it is gone or not a folder any more."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError as err:
        if err.errno == errno.ELOOP:  # a symlink now: not ours to follow
            return None, None
        if err.errno != errno.EACCES:
            return None, err
        try:
            _make_searchable(dir_fd, name)
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as again:
            return None, again
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        os.close(fd)
        return None, None
    if st.st_mode & 0o700 != 0o700:  # so that its entries can be removed (an unprivileged coordinator)
        try:
            os.chmod(fd, 0o700)
        except OSError:
            pass
    return fd, st


def _make_searchable(dir_fd: int, name: str) -> None:
    """chmod 0700 the folder `name`, through an O_PATH descriptor (never a symlink's target)."""
    handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISDIR(os.fstat(handle).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", name)
        os.chmod(f"/proc/self/fd/{handle}", 0o700)
    finally:
        os.close(handle)
