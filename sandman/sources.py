"""Source files a recipe downloads: fetched on the host, verified by sha256, cached by content.

A version's `sources = [{ url, sha256, file? }]` are fetched here, never inside the build, so
the build needs no network and the bytes are checked before docker sees them. The cache is
content-addressed (`<cache>/sources/sha256/<hex>`): the same tarball is downloaded once for
every recipe and version that names it, and a file can be dropped there by hand on a machine
that cannot reach the URL. An offline site sets a mirror (`sources_mirror` in config.toml, or
`SANDMAN_SOURCES_MIRROR`): a folder or a URL prefix tried before the recipe's URL, holding each
file under its download name or under `sha256/<hex>`; nothing else changes (the fingerprint
holds the sha256, not the URL).

Only the standard library is used (urllib): a GET with a timeout, redirects and proxies from
the environment is all this needs, and it keeps `sandman` fast to start.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from sandman import __version__, state
from sandman.errors import SourceError, StateError
from sandman.paths import Paths
from sandman.recipes import SOURCE_FILE_RE, SOURCE_SCHEMES, Source, url_file_name
from sandman.text import quoted, safe

MIRROR_ENV = "SANDMAN_SOURCES_MIRROR"
# A mirror is the user's own setting (config.toml, the environment), so it may be a folder of this
# host; a recipe's own URL is http(s) only (recipe_check.url_problem), and is fetched only as such.
MIRROR_SCHEMES = (*SOURCE_SCHEMES, "file")
TIMEOUT = 30  # seconds without a byte before a download is given up
MAX_BYTES = 16 << 30  # a server that never stops sending cannot fill the disk
CHUNK = 1 << 16
PROGRESS_EVERY = 2.0  # seconds between progress lines


class _Failed(Exception):
    """One place a source could not be had from (the reason, for the error's detail)."""


def cache_root(paths: Paths) -> Path:
    return paths.cache_dir / "sources" / "sha256"


def cache_path(paths: Paths, sha256: str) -> Path:
    """Where a source with this sha256 is kept, and where a user may drop it by hand."""
    return cache_root(paths) / sha256


def mirror_problem(value: str) -> str | None:
    """Why `value` cannot be a sources mirror (an absolute folder or an http/https/file URL)."""
    if "://" in value:
        scheme = urllib.parse.urlsplit(value).scheme
        if scheme not in MIRROR_SCHEMES:
            return f"{quoted(value)} is not an http://, https:// or file:// URL prefix"
        return None
    if not Path(os.path.expanduser(value)).is_absolute():
        return f"{quoted(value)} is neither a URL prefix nor an absolute folder"
    return None


def configured_mirror(config_mirror: str | None, env: Mapping[str, str]) -> str | None:
    """The mirror in effect: SANDMAN_SOURCES_MIRROR wins over config.toml's sources_mirror."""
    value = env.get(MIRROR_ENV) or None
    if value is not None:
        problem = mirror_problem(value)
        if problem:
            raise StateError(f"{MIRROR_ENV}: {problem}")
        return value
    return config_mirror


def candidates(source: Source, mirror: str | None) -> list[str]:
    """The URLs tried for a source, in order: the mirror's, then the recipe's own.

    In a mirror, a source is looked up under the URL's file name, then under the recipe's
    `file` (when it differs), then under `sha256/<hex>`.
    """
    out: list[str] = []
    if mirror:
        names = [url_file_name(source.url), source.file]
        names = [n for n in dict.fromkeys(names) if SOURCE_FILE_RE.match(n)]
        names.append(f"sha256/{source.sha256}")
        if "://" in mirror:
            prefix = mirror.rstrip("/")
            out += [f"{prefix}/{urllib.parse.quote(n)}" for n in names]
        else:
            folder = Path(os.path.expanduser(mirror))
            out += [(folder / n).as_uri() for n in names]
    if urllib.parse.urlsplit(source.url).scheme in SOURCE_SCHEMES:  # never a recipe's file://
        out.append(source.url)
    return out


def fetch_all(sources: Iterable[Source], paths: Paths, *, mirror: str | None,
              on_line: Callable[[str], None], what: str) -> dict[str, Path]:
    """Every source in the cache, verified: build-context name (`sources/<file>`) -> file.

    Raises SourceError (nothing is built) naming the URL and the cache path to fill by hand.
    """
    return {f"sources/{s.file}": fetch(s, paths, mirror=mirror, on_line=on_line, what=what)
            for s in sources}


def fetch(source: Source, paths: Paths, *, mirror: str | None, on_line: Callable[[str], None],
          what: str) -> Path:
    """The cached file of `source`, downloading it first when it is not cached (or is wrong)."""
    target = cache_path(paths, source.sha256)
    tried: list[str] = []
    cached = _cached_digest(target)
    if cached == source.sha256:
        # said, not silent: a rebuild (`install --force`) from the cache is no fresh download
        on_line(f"source {quoted(source.file)} of {what}: from the download cache "
                f"({safe(target)}, sha256 checked)")
        return target.resolve()
    if cached is not None:  # a file dropped by hand that is not the one the recipe names
        tried.append(f"{safe(target)}: {cached}")
    state.private_dir(target.parent)
    for url in candidates(source, mirror):
        try:
            digest = _download(url, source, target, on_line)
        except _Failed as e:
            tried.append(f"{safe(url)}: {e}")
            continue
        if digest == source.sha256:
            return target.resolve()
        if url.startswith("file:"):  # a file of this host (the user's mirror): its digest stays here
            tried.append(f"{safe(url)}: not the file the recipe names (another sha256)")
        else:
            tried.append(f"{safe(url)}: sha256 {digest}, the recipe expects {source.sha256}")
    last = tried[-1].split(": ", 1)[1] if tried else "not found"
    raise SourceError(
        f"{what}: cannot get source {quoted(source.file)} from {safe(source.url)}: {last}; "
        f"nothing was built. Download it yourself, check that `sha256sum` prints "
        f"{source.sha256}, and put it at {safe(target)}",
        detail="tried:\n" + "\n".join("  " + t for t in tried))


def cached(paths: Paths, sha256: str) -> Path | None:
    """The cached file with this sha256 when it is there and matches (hashed again), else None."""
    target = cache_path(paths, sha256)
    return target if _cached_digest(target) == sha256 else None


def put(paths: Paths, sha256: str, stream: BinaryIO) -> str:
    """Copy stream into the cache as `sha256`, only when its content hashes to it; its sha256.

    For files that arrive by another road than a download (an offline bundle): the cache holds
    only verified files, whoever brings them. A file already there and right is kept.
    """
    if cached(paths, sha256) is not None:
        return sha256
    target = cache_path(paths, sha256)
    state.private_dir(target.parent)
    with state.writing(target), contextlib.ExitStack() as stack:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{sha256}.", suffix=".tmp")
        stack.callback(lambda: Path(tmp).unlink(missing_ok=True))
        h = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: stream.read(CHUNK), b""):
                done += len(block)
                if done > MAX_BYTES:
                    break
                h.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest() if done <= MAX_BYTES else "(larger than the limit)"
        if digest == sha256:
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
    return digest


def _cached_digest(path: Path) -> str | None:
    """The sha256 of a cached (or hand-dropped) file, None when there is none.

    Hashed on every use: a file put there by hand is only trusted once it matches.
    """
    try:
        with _open_regular(path) as f:
            return _hash(f)
    except (OSError, _Failed):
        return None


def _hash(f: BinaryIO) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading (symlinks followed); a device or FIFO is refused
    before anything is read, so a hash or a copy always ends."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _Failed("not a regular file")
    return os.fdopen(fd, "rb")


def _download(url: str, source: Source, target: Path, on_line: Callable[[str], None]) -> str:
    """Copy url into target (atomically, only when its sha256 is the expected one); its sha256."""
    import http.client  # here, not at the top: urllib.request costs ~40 ms to import
    import urllib.error
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    try:
        if parts.scheme == "file":
            path = Path(urllib.parse.unquote(parts.path))
            stream: BinaryIO = _open_regular(path)
            total: int | None = os.fstat(stream.fileno()).st_size
        else:
            request = urllib.request.Request(url, headers={"User-Agent": f"sandman/{__version__}"})
            stream = urllib.request.urlopen(request, timeout=TIMEOUT)  # scheme checked: http(s) only
            length = stream.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
    except urllib.error.HTTPError as e:
        raise _Failed(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise _Failed(f"unreachable ({safe(e.reason)})") from e
    except FileNotFoundError as e:
        raise _Failed("no such file") from e
    except (OSError, ValueError, http.client.HTTPException) as e:  # timeouts, resets, bad URL
        raise _Failed(safe(getattr(e, "strerror", None) or e)) from e
    on_line(f"downloading {source.file} from {safe(url)}" + (f" ({_mib(total)})" if total else ""))
    with state.writing(target), contextlib.ExitStack() as stack:
        stack.enter_context(stream)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{source.sha256}.", suffix=".tmp")
        stack.callback(lambda: Path(tmp).unlink(missing_ok=True))
        h = hashlib.sha256()
        done, last = 0, time.monotonic()
        with os.fdopen(fd, "wb") as out:
            while True:
                try:
                    block = stream.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Failed(f"download broke off after {_mib(done)}: "
                                  f"{safe(getattr(e, 'strerror', None) or e)}") from e
                if not block:
                    break
                done += len(block)
                if done > MAX_BYTES:
                    raise _Failed(f"larger than {_mib(MAX_BYTES)}; put it in the cache by hand")
                h.update(block)
                out.write(block)
                if time.monotonic() - last >= PROGRESS_EVERY:
                    last = time.monotonic()
                    share = f" of {_mib(total)} ({100 * done // total}%)" if total else ""
                    on_line(f"downloading {source.file}: {_mib(done)}{share}")
            if total is not None and done < total:
                raise _Failed(f"download broke off after {_mib(done)} of {_mib(total)}")
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if digest == source.sha256:
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
            on_line(f"downloaded {source.file}: {_mib(done)}, sha256 verified")
    return digest


def _mib(n: int | None) -> str:
    return f"{(n or 0) / (1 << 20):.1f} MiB"
