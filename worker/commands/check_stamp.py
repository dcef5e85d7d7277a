"""The quick health check's memory: "these exact inputs were validated", as one sha256.

Validating settings and the mapping costs ~0.7 s of imports (pydantic, pydantic-settings,
the mapping models) in a process that a container runs every 30-60 s, and the answer only
changes when an input does. So the full check (worker/commands/check.py), once settings and
mapping passed, writes a *stamp*: the sha256 of everything the validation read, and the
lines it printed for them. The quick check (worker/commands/quick_check.py) recomputes the
sha256 with the standard library only; the same sha256 means the same inputs, so the same
verdict, and it prints the stamped lines without importing any of it.

What the key covers, so that any change is a miss (and the full check runs again):
- crmsync's version, and the validating code itself (every ``mappings`` module and
  ``default.yaml``, the settings package, the check's modules: an edited checkout keeps its
  version), the interpreter and its environment (``sys.prefix``), and the working directory
  (``.env`` and relative paths);
- the environment, every variable but a few a shell changes on its own (``PWD``, ``SHLVL``
  ...: a container's health check runs with the same environment each time, and an unknown
  variable can only cause a miss, never a wrong hit);
- ``.env`` in the working directory, byte for byte (or its absence);
- each file the validation read, by content: the mapping file and the ``*_FILE`` secrets.

No secret is stored: the stamp holds digests, paths and the non-secret lines ``check`` shows.
The directory is ``$XDG_CACHE_HOME/crmsync`` (else ``~/.cache/crmsync``), private to the
user (0700, the file 0600); where it cannot be written (a read-only root filesystem without a
writable ``XDG_CACHE_HOME``) nothing is stamped and every check takes the full path, silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Bumped when the stamp's meaning changes: an old stamp is then a miss.
STAMP_FORMAT = 1
STAMP_FILE = "check-quick.json"

#: Variables a shell or terminal sets or changes by itself (a new directory, a nested shell, a
#: resized window): hashing them would only make the stamp miss from an interactive shell.
VOLATILE_VARIABLES = frozenset(
    {"_", "OLDPWD", "PWD", "SHLVL", "COLUMNS", "LINES", "PS1", "PROMPT_COMMAND", "WINDOWID"}
)
VOLATILE_PREFIXES = ("SSH_", "TERM_SESSION_", "WINDOW")

#: Where the validating code lives (hashed into the key): the package directories next to
#: this one, in a checkout and in site-packages alike. Named one by one, not ``**``: the
#: mapping package also holds the Salesforce metadata tree (tests/commands/test_check_stamp.py
#: checks that every module of ``mappings`` is covered).
_WORKER = Path(__file__).resolve().parents[1]
_CODE: tuple[tuple[Path, str], ...] = (
    (_WORKER.parent / "mappings", "*.py"),
    (_WORKER.parent / "mappings" / "contracts", "*.py"),
    (_WORKER.parent / "mappings", "*.yaml"),
    (_WORKER / "settings", "*.py"),
    (_WORKER / "commands", "check*.py"),
    (_WORKER / "commands", "quick_check.py"),
    (_WORKER / "state", "ping.py"),
)


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """``$XDG_CACHE_HOME/crmsync``, else ``~/.cache/crmsync``; None without either."""
    base = environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(base):
        return Path(base) / "crmsync"
    home = environ.get("HOME", "")
    return Path(home) / ".cache" / "crmsync" if os.path.isabs(home) else None


def relevant_environment(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every variable but the volatile ones, sorted."""
    return sorted(
        (name, value)
        for name, value in environ.items()
        if name not in VOLATILE_VARIABLES and not name.startswith(VOLATILE_PREFIXES)
    )


def _code_digest() -> str:
    digest = hashlib.sha256()
    for directory, pattern in _CODE:
        for path in sorted(directory.glob(pattern)):
            if "__pycache__" not in path.parts:
                digest.update(path.relative_to(_WORKER.parent).as_posix().encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _installed_version() -> str:
    from worker.commands.installed import installed_version

    return installed_version()


def _file_digest(path: Path) -> bytes:
    """The content's sha256, or what stopped it being read (a miss either way)."""
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError as exc:
        return f"unreadable: {exc.errno}".encode()


def stamp_key(
    files: Sequence[str], environ: Mapping[str, str] = os.environ, cwd: str | None = None
) -> str:
    """The sha256 of every input the validation read (module docstring); ``files`` are the
    absolute paths it read besides ``.env``."""
    cwd = cwd if cwd is not None else os.getcwd()
    digest = hashlib.sha256()

    def part(label: str, data: bytes) -> None:  # length-prefixed: no two inputs run together
        digest.update(b"%s %d\n" % (label.encode(), len(data)) + data)

    part("format", str(STAMP_FORMAT).encode())
    part("version", _installed_version().encode())
    part("python", f"{sys.version}\0{sys.prefix}".encode())
    part("code", _code_digest().encode())
    part("cwd", cwd.encode())
    for name, value in relevant_environment(environ):
        part("env", f"{name}={value}".encode(errors="surrogateescape"))
    part(".env", _file_digest(Path(cwd) / ".env"))
    for path in files:
        part("file", path.encode(errors="surrogateescape") + b"\0" + _file_digest(Path(path)))
    return digest.hexdigest()


def secret_digest(key: str, value: str) -> str:
    """A value the stamp must vouch for without holding it (the Redis URL, which may carry
    the password), bound to this key: whoever can read the inputs can recompute it, and no
    one else learns anything they could not already brute-force from the key itself."""
    return hashlib.sha256(f"{key}\0{value}".encode()).hexdigest()


def read_stamp(environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """The stamp, if there is one and its key matches today's inputs; else None."""
    directory = cache_dir(environ)
    if directory is None:
        return None
    try:
        stamp = json.loads((directory / STAMP_FILE).read_text(encoding="utf-8"))
        files = [str(path) for path in stamp["files"]]
        if stamp.get("format") != STAMP_FORMAT:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(stamp, dict) or stamp.get("key") != stamp_key(files, environ):
        return None
    return stamp


def write_stamp(
    files: Iterable[str],
    content: Callable[[str], Mapping[str, Any]],
    environ: Mapping[str, str] = os.environ,
) -> str | None:
    """Stamp today's inputs (``files``: what the validation read besides ``.env``) with
    ``content(key)``; the key written, or None where the cache directory cannot be written
    (then nothing is stamped: see the module docstring)."""
    directory = cache_dir(environ)
    if directory is None:
        return None
    paths = [os.path.abspath(path) for path in files]
    key = stamp_key(paths, environ)
    stamp = {**content(key), "format": STAMP_FORMAT, "key": key, "files": paths}
    import tempfile  # only here: it imports random, which the quick check never needs

    temporary: str | None = None
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # 0600, in the stamp's directory: os.replace is atomic, readers see old or new.
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".stamp-")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(stamp, handle)
        os.replace(temporary, directory / STAMP_FILE)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return None
    return key
