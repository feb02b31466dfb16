"""A tool's own bash completion and manual pages, beside its shims (issue 21 items 7 and 10).

What: for each shim (`sqlite3-3.34`, `psql-13`), the completion of the tool's own arguments,
version by version, with file names where the tool has none; and the manual pages of the
recipe's declared packages, renamed `<page>-<version>` (`man sqlite3-3.34`).

Nothing of an image ever runs on the host (docs/security.md, "Completion and manual pages"): a
completion script the image ships (/usr/share/bash-completion/completions/<cmd>,
/etc/bash_completion.d/<cmd>) was put there by a recipe's `run` steps, a registry or a bundle,
and is code. It is never copied out nor sourced here: the host function registered for a shim
runs the shim with SANDMAN_COMPLETE=<cmd> and the words, the shim sources the script in the
tool's own container and sandbox (every mount read-only, no path argument mounted, stdin
/dev/null), and only words come back, checked here (printable, at most 1000 of at most 4096
characters, within 3 s; anything else: file names). Manual pages are data, rendered by man-db.

How, without touching any image (a change to the generated Dockerfile would change every
fingerprint and rebuild every image): at install, one short container of the installed image
records which commands have a completion script (and a bash to run it), and, for a recipe's
`packages`, downloads those packages at their installed versions (`apt-get download`: the slim
bases keep no man pages, dpkg's path-exclude drops them) and keeps their /usr/share/man; an
image built from a Dockerfile gives the pages it has of its commands. The result is cached by
image id in `<cache>/facts/<id>.toolfiles.json`, so each image is read once per home. A failure
(no network for the download) costs only the pages: the install goes on with a warning, and
`sandman man` tries again.

Where, so that nothing needs configuring: shims are on PATH, and both man-db and bash-completion
(>= 2.9) look beside each PATH folder: `<bin>/../share/man` and
`<bin>/../share/bash-completion/completions/<command>`. The registrations themselves live in
`<data>/completion/`; `<data>/completion.bash` loads them all (a bash without bash-completion,
or zsh after `bashcompinit`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandman import state
from sandman.paths import Paths
from sandman.state import atomic_write

if TYPE_CHECKING:
    from collections.abc import Callable

    from sandman.engine import Engine

SCHEMA = 2  # 1 kept the scripts themselves: read as "has a script", never written back
COMPLETION_DIRS = ("/usr/share/bash-completion/completions", "/etc/bash_completion.d")
_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
_CMD_RE = re.compile(r"^[A-Za-z0-9._+-]+$")
_PAGE_RE = re.compile(r"^man([0-9][a-z]*)/([^/]+)\.([0-9][a-z]*)(\.gz)?$")


@dataclass(frozen=True)
class ToolFiles:
    completions: tuple[str, ...]  # the commands with a completion script (and bash) in the image
    man: dict[str, bytes]  # "man1/sqlite3.1.gz" -> the page
    man_error: str = ""  # why the packages' pages could not be had ("" when they could)


def cache_file(paths: Paths, image_id: str) -> Path:
    return paths.facts_dir / f"{image_id.replace('sha256:', '')}.toolfiles.json"


def completion_dir(paths: Paths) -> Path:
    """Where bash-completion >= 2.9 looks for `<command>` when `<bin>` is on PATH."""
    return paths.bin_dir.parent / "share" / "bash-completion" / "completions"


def man_dir(paths: Paths) -> Path:
    """Where man-db looks when `<bin>` is on PATH (and MANPATH is unset or has an empty part)."""
    return paths.bin_dir.parent / "share" / "man"


def registrations_dir(paths: Paths) -> Path:
    return paths.data_dir / "completion"


def loader(paths: Paths) -> Path:
    return paths.data_dir / "completion.bash"


def cached(paths: Paths, image_id: str) -> ToolFiles | None:
    try:
        d = json.loads(cache_file(paths, image_id).read_text(encoding="utf-8"))
        if d.get("schema") not in (1, SCHEMA):
            return None
        return ToolFiles(tuple(str(c) for c in d["completions"]),
                         {k: base64.b64decode(v) for k, v in d["man"].items()}, d["man_error"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _script(commands: list[str], packages: list[str]) -> str:
    cmds = " ".join(shlex.quote(c) for c in commands)
    pkgs = " ".join(shlex.quote(p) for p in packages)
    comp = " ".join(f'{d}/"$c" {d}/"$c".bash {d}/_"$c"' for d in COMPLETION_DIRS)
    # which commands have a completion script: only a name is recorded, the script stays in
    # the image (the shim runs it there, with bash, as SANDMAN_COMPLETE)
    return f"""set -u
mkdir -p /tmp/sm-out/completions /tmp/sm-out/root/usr/share/man
sh_bash=; command -v bash >/dev/null 2>&1 && sh_bash=1
for c in {cmds}; do
  for f in {comp}; do
    [ -n "$sh_bash" ] || break
    if [ -f "$f" ] && [ -r "$f" ]; then : >/tmp/sm-out/completions/"$c"; break; fi
  done
  for f in /usr/share/man/man*/"$c".[0-9]*; do
    [ -f "$f" ] && mkdir -p /tmp/sm-out/root"${{f%/*}}" && cp -L "$f" /tmp/sm-out/root"$f"
  done
done
pkgs="{pkgs}"
[ -n "$pkgs" ] || exit 0
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || exit 0
mkdir -p /tmp/sm-debs && cd /tmp/sm-debs || exit 3
apt="-qq -o Dir::State::Lists=/tmp/sm-apt/lists -o Dir::Cache=/tmp/sm-apt/cache -o Debug::NoLocking=1"
mkdir -p /tmp/sm-apt/lists/partial /tmp/sm-apt/cache/archives/partial
apt-get $apt update >/tmp/sm-log 2>&1 || {{ tail -n 3 /tmp/sm-log >/tmp/sm-out/error; exit 0; }}
for p in $pkgs; do
  v=$(dpkg-query -W -f='${{Version}}' "$p" 2>/dev/null)
  apt-get $apt download "$p=$v" >>/tmp/sm-log 2>&1 || apt-get $apt download "$p" >>/tmp/sm-log 2>&1 ||
    echo "cannot download $p" >>/tmp/sm-out/error
done
for d in /tmp/sm-debs/*.deb; do
  [ -f "$d" ] && dpkg-deb --fsys-tarfile "$d" |
    tar -x -C /tmp/sm-out/root --wildcards './usr/share/man/*' 2>/dev/null
done
exit 0
"""


def extract(engine: Engine, image_id: str, commands: list[str], packages: list[str],
            *, network: bool = True) -> ToolFiles:
    """One short container of the image: which commands have a completion script, and the man
    pages of packages (downloaded at their installed versions) or of the commands."""
    import docker

    from sandman.engine import translate
    from sandman.engine_choice import probe_options

    commands = [c for c in dict.fromkeys(commands) if _CMD_RE.match(c)]
    packages = [p for p in dict.fromkeys(packages) if _PKG_RE.match(p)]
    with translate(f"reading the completion and manual pages of {image_id[:19]}"):
        container = engine.client.containers.create(
            image_id, command=["-c", _script(commands, packages)], entrypoint=["/bin/sh"],
            # nobody, no capabilities: the image's own code runs here (apt, as anything
            # else in it), with a network only to download the declared packages' pages
            user="65534:65534", **probe_options(engine.choice, network=network and bool(packages)))
        try:
            container.start()
            container.wait(timeout=300)
            stream, _ = container.get_archive("/tmp/sm-out")
            data = b"".join(stream)
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
    completions: list[str] = []
    man: dict[str, bytes] = {}
    error = ""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            body = tar.extractfile(m)
            content = body.read() if body else b""
            name = m.name
            if name.startswith("sm-out/completions/"):  # an empty mark, named by the command
                if _CMD_RE.match(name[len("sm-out/completions/"):]):
                    completions.append(name[len("sm-out/completions/"):])
            elif name.startswith("sm-out/root/usr/share/man/"):
                rel = name[len("sm-out/root/usr/share/man/"):]
                if _PAGE_RE.match(rel):  # the pages themselves, not translations (de/man1/...)
                    man[rel] = content
            elif name == "sm-out/error":
                error = content.decode("utf-8", "replace").strip()
    return ToolFiles(tuple(sorted(completions)), man, error)


def get(engine: Engine, paths: Paths, image_id: str, commands: list[str], packages: list[str],
        *, retry: bool = False) -> ToolFiles:
    """The image's tool files, from the cache or one extraction (cached by image id)."""
    have = cached(paths, image_id)
    if have is not None and not (retry and have.man_error):
        return have
    got = extract(engine, image_id, commands, packages)
    atomic_write(cache_file(paths, image_id), json.dumps({
        "schema": SCHEMA, "completions": list(got.completions), "man_error": got.man_error,
        "man": {k: base64.b64encode(v).decode() for k, v in got.man.items()}}).encode())
    return got


# -- exposing them for one install ----------------------------------------------------------------
def _fn_name(shim: str) -> str:
    return "_sandman_c_" + re.sub(r"[^A-Za-z0-9_]", "_", shim)


REGISTRATION = r"""# sandman-completion: {shim} ({key}), completed by {what}
# Written by sandman install; do not edit. Loaded by bash-completion (>= 2.9) on the first Tab,
# or by {loader} (bash without bash-completion; zsh after bashcompinit).
{body}complete -o default -F {fn} {shim}
"""
# The image's completion script runs in the shim's container, never here: this function only
# runs the shim (SANDMAN_COMPLETE, shims/shim.bash) and keeps the words that come back that are
# printable text, at most 1000 of at most 4096 characters, 256 KiB in all, within 3 s (then 1 s
# more before a KILL); anything else, or nothing, leaves COMPREPLY empty: -o default gives file
# names. Two small forks (timeout, head) besides the call.
TOOL_COMPLETE = r"""_sandman_tool_complete() {{  # SHIM COMMAND: COMMAND's completion, from SHIM's container
  local _sm_w _sm_n=0
  COMPREPLY=()
  [[ -x $1 ]] && command -v timeout >/dev/null 2>&1 && command -v head >/dev/null 2>&1 || return 0
  while IFS= read -r -d '' _sm_w; do
    (( ++_sm_n > {max_words} )) && break
    [[ -n $_sm_w && ${{#_sm_w}} -le {max_len} && $_sm_w != *[![:print:]]* ]] && COMPREPLY+=("$_sm_w")
  done < <(SANDMAN_COMPLETE=$2 SANDMAN_COMPLETE_CWORD=${{COMP_CWORD-}} SANDMAN_COMPLETE_LINE=${{COMP_LINE-}} \
    SANDMAN_COMPLETE_POINT=${{COMP_POINT-}} timeout -k 1 {seconds} "$1" "${{COMP_WORDS[@]}}" \
    </dev/null 2>/dev/null | head -c {max_bytes} 2>/dev/null)
  return 0
}}
{fn}() {{ _sandman_tool_complete {shim_path} {cmd}; }}
"""
FILE_NAMES = """{fn}() {{ COMPREPLY=(); }}  # no completion script in the image: file names, no container
"""
MAX_WORDS, MAX_LEN, MAX_BYTES, SECONDS = 1000, 4096, 262144, 3


def expose(paths: Paths, key: str, plan: dict[str, str], files: ToolFiles, version: str) -> None:
    """Write the completion of each shim (plan: shim name -> command in the image) and the man
    pages of key, renamed `<page>-<version>`; what was there for key before and is no longer
    wanted goes first. A file or link already exactly as wanted is left as it is (a `reshim
    --all` writes only what changed): the result is the same as removing all and writing again."""
    regs = registrations_dir(paths)
    comp = completion_dir(paths)
    wanted: dict[Path, bytes] = {}  # every file, 0644
    links: dict[Path, Path] = {}  # completion link -> its registration
    for shim, cmd in plan.items():
        own = cmd in files.completions and bool(_CMD_RE.match(cmd))
        body = (TOOL_COMPLETE.format(
            fn=_fn_name(shim), cmd=shlex.quote(cmd), shim_path=shlex.quote(str(paths.bin_dir / shim)),
            max_words=MAX_WORDS, max_len=MAX_LEN, max_bytes=MAX_BYTES, seconds=SECONDS)
            if own else FILE_NAMES.format(fn=_fn_name(shim)))
        reg = regs / f"{shim}.bash"
        wanted[reg] = REGISTRATION.format(
            shim=shlex.quote(shim), key=key, fn=_fn_name(shim), body=body,
            what=f"{cmd}'s own completion, run in its container" if own else "file names",
            loader=loader(paths)).encode()
        links[comp / shim] = reg
    pages: dict[Path, bytes] = {}
    for rel, content in sorted(files.man.items()):
        m = _PAGE_RE.match(rel)
        if not m:
            continue
        folder, page, section, gz = m.groups()
        pages[man_dir(paths) / f"man{folder}" / f"{page}-{version}.{section}{gz or ''}"] = content
    keep = {p for p, data in {**wanted, **pages}.items() if state.unchanged(p, data, 0o644)}
    keep |= {link for link, reg in links.items() if _links_to(link, reg)}
    remove(paths, key, keep=keep)
    regs.mkdir(parents=True, exist_ok=True, mode=0o755)
    written: list[str] = []
    for shim in plan:
        reg = regs / f"{shim}.bash"
        if reg not in keep:
            atomic_write(reg, wanted[reg], 0o644, dir_mode=0o755)
        written.append(str(reg))
        link = comp / shim
        if link in keep:
            written.append(str(link))
        elif not link.exists() or (link.is_symlink() and os.readlink(link) == str(reg)):
            comp.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(reg)
            written.append(str(link))
    for out, content in pages.items():
        if out not in keep:
            atomic_write(out, content, 0o644, dir_mode=0o755)
        written.append(str(out))
    _write_loader(paths)
    state.write_if_changed(_manifest(paths, key), ("\n".join(written) + "\n").encode(), 0o644,
                           dir_mode=0o755)


def _links_to(link: Path, target: Path) -> bool:
    try:
        return os.readlink(link) == str(target)
    except OSError:
        return False


def _manifest(paths: Paths, key: str) -> Path:
    return registrations_dir(paths) / f"{key}.files"


_loaders: set[Path] = set()


def _write_loader(paths: Paths) -> None:
    """The loader, checked once per process and file (every install's expose asks)."""
    if loader(paths) in _loaders:
        return
    text = ("# sandman: the completion of every installed shim's own arguments.\n"
            "# In ~/.bashrc (or ~/.zshrc after: autoload -U +X bashcompinit && bashcompinit):\n"
            f"#   source {shlex.quote(str(loader(paths)))}\n"
            f"for _sm_f in {shlex.quote(str(registrations_dir(paths)))}/*.bash; do\n"
            '  [[ -r $_sm_f ]] && . "$_sm_f"\n'
            "done\nunset _sm_f\n")
    state.write_if_changed(loader(paths), text.encode(), 0o644, dir_mode=0o755)
    _loaders.add(loader(paths))


def remove(paths: Paths, key: str, *, keep: set[Path] | frozenset[Path] = frozenset()) -> None:
    """Take away what expose wrote for key (the files its manifest lists), but those in keep
    (expose's own, already as it would write them)."""
    manifest = _manifest(paths, key)
    try:
        listed = manifest.read_text(encoding="utf-8").split("\n")
    except OSError:
        return
    regs = registrations_dir(paths)
    for name in filter(None, listed):
        p = Path(name)
        if p in keep:  # (most of a reshim: nothing to look at)
            continue
        ours = (p.parent == regs or p.parent.parent == man_dir(paths)
                or (p.parent == completion_dir(paths) and p.is_symlink()
                    and Path(os.readlink(p)).parent == regs))
        if ours:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    if not keep:
        with contextlib.suppress(FileNotFoundError):
            manifest.unlink()


def pages(paths: Paths, key: str) -> list[Path]:
    """The man pages written for key (tool@version)."""
    try:
        listed = _manifest(paths, key).read_text(encoding="utf-8").split("\n")
    except OSError:
        return []
    return [Path(n) for n in listed if n and Path(n).parent.parent == man_dir(paths)]


def install_files(engine_of: Callable[[], Engine], paths: Paths, key: str, version: str,
                  image_id: str, plan: dict[str, str], packages: list[str], *,
                  extract_ok: bool = True, retry: bool = False) -> ToolFiles | None:
    """get + expose for one install; None when the image has not been read and extract_ok is
    False (a reshim never starts a container, nor connects: the shims refresh through it)."""
    files = (get(engine_of(), paths, image_id, list(plan.values()), packages, retry=retry)
             if extract_ok else cached(paths, image_id))
    if files is None:
        return None
    expose(paths, key, plan, files, version)
    return files


def plan_for(tool: str, version: str, runtime: object, shim_names: list[str]) -> dict[str, str]:
    """Shim name -> the command whose completion it takes: a command shim its command (as run in
    the image), the tool's own shim its entrypoint's program (else the tool's name)."""
    from sandman.recipes import shim_plan

    p = shim_plan(tool, version, runtime)  # type: ignore[arg-type]
    entry = getattr(runtime, "entrypoint", ()) or ()
    own = os.path.basename(entry[0]) if entry else tool
    out = {}
    for name in shim_names:
        cmd = p.get(name, name)
        out[name] = own if cmd is None else runtime.run_name(cmd)  # type: ignore[attr-defined]
    return out

