"""Recipe repositories shared through git, and imported bundles (see docs/teams.md).

A repository is a git clone in sandman's data dir, pinned to one commit: the catalog reads the
recipes of that commit and nothing else, so a teammate's push changes nothing here until
`repo update` moves the pin. Trust is keyed to the pinned commit for the same reason: what the
user reviewed is exactly what builds. After an update that waits for trust, a recipe whose
folder is byte for byte the trusted one still builds exactly that, so it stays trusted
(`unchanged_tools`); the catalog applies that rule. git runs with hooks off, no submodules and
no `ext::` transport, so adding or updating a repository never runs code from it.

Imported bundles (sandman/commands/bundle.py) are recipe sources too; they share the state file and the
`NAME/` namespace with repositories so a name always means one thing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from sandman.errors import NotFoundError, RemoteError, StateError, UsageError
from sandman.installs import atomic_write
from sandman.paths import Paths
from sandman.text import safe

STATE_SCHEMA = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
RESERVED = re.compile(r"^(env\d*|user|builtin)$")
# Every git call: no hooks, no filesystem monitor, no `ext::` (it runs a command), no prompts.
GIT = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
       "-c", "protocol.ext.allow=never", "-c", "submodule.recurse=false",
       "-c", "advice.detachedHead=false"]


@dataclass(frozen=True)
class Repo:
    name: str
    url: str
    ref: str | None  # branch, tag or commit to follow; None: the remote's default branch
    commit: str  # the pinned commit the catalog reads
    trusted_commit: str | None = None
    added_at: str = ""
    kind: str = "repo"  # "repo" (git clone) or "bundle" (imported archive, see bundle.py)

    @property
    def trusted(self) -> bool:
        return self.kind == "bundle" or self.trusted_commit == self.commit

    @property
    def pending_trust(self) -> bool:
        """Trusted once, then updated to a commit the user has not trusted yet."""
        return self.kind == "repo" and self.trusted_commit not in (None, self.commit)


def clone_dir(paths: Paths, name: str) -> Path:
    return paths.repos_dir / name


def recipes_root(folder: Path) -> Path:
    """Recipes live under `recipes/` when the repository has that folder, else at its root."""
    sub = folder / "recipes"
    return sub if sub.is_dir() else folder


def _state_file(paths: Paths) -> Path:
    return paths.repos_dir / "repos.json"


def load_all(paths: Paths) -> list[Repo]:
    f = _state_file(paths)
    if not f.exists():
        return []
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
        if data.get("schema") != STATE_SCHEMA:
            raise StateError(f"{f}: repo state of schema {data.get('schema')}; this sandman reads "
                             f"schema {STATE_SCHEMA}")
        return [Repo(**r) for r in data["repos"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise StateError(f"{f}: unreadable repo state ({e})") from e


def _save_all(paths: Paths, repos: list[Repo]) -> None:
    data = {"schema": STATE_SCHEMA, "repos": [asdict(r) for r in repos]}
    atomic_write(_state_file(paths), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def get(paths: Paths, name: str) -> Repo:
    for r in load_all(paths):
        if r.name == name:
            return r
    have = ", ".join(r.name for r in load_all(paths)) or "none"
    raise NotFoundError(f"no recipe repo named '{name}'; repos: {have}")


def check_name_syntax(name: str) -> None:
    if not NAME_RE.match(name) or RESERVED.match(name):
        raise UsageError(f"'{name}' cannot name a recipe source: use lower case letters, digits, "
                         "'.', '_', '-' (not env, envN, user or builtin)")


def check_name(paths: Paths, name: str) -> None:
    check_name_syntax(name)
    if any(r.name == name for r in load_all(paths)):
        raise UsageError(f"'{name}' is already a recipe source; remove it first "
                         f"(sandman repo remove {name}) or pick another name")


def git(args: list[str], *, cwd: Path | None = None, what: str) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    try:
        proc = subprocess.run([*GIT, *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise RemoteError(f"{what}: git is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise RemoteError(f"{what}: git took longer than 10 minutes") from e
    if proc.returncode != 0:
        raise RemoteError(f"{what}: {git_reason(proc.stderr)}")
    return proc.stdout.strip()


# What git says around the reason, whatever the reason was: not worth a user's reading.
_GIT_BOILERPLATE = ("Could not read from remote repository.",
                    "Please make sure you have the correct access rights",
                    "and the repository exists.",
                    "To add an exception for this directory, call:")
_SAFE_DIRECTORY = "git config --global --add safe.directory "


def git_reason(stderr: str) -> str:
    """git's reason for a failure, as one line: its fatal/error lines, and its own fix.

    git prints the reason, then generic lines ("Could not read from remote repository",
    "Please make sure you have the correct access rights"); the reason is what a user needs,
    for example "detected dubious ownership in repository at '/srv/recipes/.git'" when the
    repository belongs to another user, with the `safe.directory` command git suggests. When
    every fatal line is generic, the lines before it (ssh's, the server's) are the reason.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fix = next((line for line in lines if line.startswith(_SAFE_DIRECTORY)), None)
    meaningful = [line for line in lines
                  if line.removeprefix("fatal: ").removeprefix("error: ") not in _GIT_BOILERPLATE
                  and not line.startswith(_SAFE_DIRECTORY)]
    reasons = [line.split(": ", 1)[1] for line in meaningful
               if line.startswith(("fatal: ", "error: "))]
    if not reasons:
        reasons = meaningful or lines[-1:] or ["(no message)"]
    reasons = list(dict.fromkeys(reasons))
    if fix:
        reasons.append(f"if you trust its owner: {fix}")
    return safe("; ".join(reasons))


def _resolve_ref(folder: Path, ref: str | None, what: str) -> str:
    candidates = (["refs/remotes/origin/HEAD", "HEAD"] if ref is None else
                  [f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref])
    for c in candidates:
        with contextlib.suppress(RemoteError):
            return git(["rev-parse", "--verify", "--quiet", f"{c}^{{commit}}"], cwd=folder, what=what)
    raise NotFoundError(f"{what}: no branch, tag or commit '{ref}' in the repository")


def _checkout(folder: Path, commit: str, what: str) -> None:
    git(["checkout", "--quiet", "--force", "--detach", commit], cwd=folder, what=what)


def _url_arg(url: str) -> str:
    p = Path(url).expanduser()
    return str(p.resolve()) if "://" not in url and p.exists() else url


def add(paths: Paths, name: str, url: str, ref: str | None = None) -> Repo:
    check_name(paths, name)
    dest = clone_dir(paths, name)
    if dest.exists():
        shutil.rmtree(dest)  # left over from an interrupted add
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = _url_arg(url)
    what = f"repo add {name}"
    local = Path(url) if "://" not in url and Path(url).is_dir() else None
    if local is not None and not (local / ".git").exists() and not (
            (local / "HEAD").is_file() and (local / "objects").is_dir()):
        q = shlex.quote(str(local))
        raise RemoteError(f"{what}: {local} is a folder, not a git repository; make it one: "
                          f"git -C {q} init && git -C {q} add -A && git -C {q} commit -m recipes")
    try:
        git(["clone", "--quiet", "--no-checkout", "--no-recurse-submodules", "--", url, str(dest)],
            what=what)
        commit = _resolve_ref(dest, ref, what)
        _checkout(dest, commit, what)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    repo = Repo(name=name, url=url, ref=ref, commit=commit,
                added_at=datetime.now(UTC).isoformat(timespec="seconds"))
    _save_all(paths, [*load_all(paths), repo])
    return repo


@dataclass(frozen=True)
class Update:
    repo: Repo
    old_commit: str
    was_trusted: bool

    @property
    def moved(self) -> bool:
        return self.repo.commit != self.old_commit


def update(paths: Paths, name: str, ref: str | None = None) -> Update:
    """Fetch and move the pin to the ref's newest commit (trust stays with the old commit)."""
    repo = get(paths, name)
    if repo.kind != "repo":
        raise UsageError(f"'{name}' is an imported bundle, not a git repo; import a newer bundle")
    folder = clone_dir(paths, name)
    what = f"repo update {name}"
    follow = ref if ref is not None else repo.ref
    git(["fetch", "--quiet", "--force", "--tags", "--prune", "--no-recurse-submodules", "origin"],
        cwd=folder, what=what)
    with contextlib.suppress(RemoteError):  # the remote's default branch may have changed
        git(["remote", "set-head", "origin", "--auto"], cwd=folder, what=what)
    commit = _resolve_ref(folder, follow, what)
    _checkout(folder, commit, what)
    new = replace(repo, ref=follow, commit=commit)
    _replace(paths, new)
    return Update(new, repo.commit, repo.trusted)


@dataclass(frozen=True)
class Updated:
    """One repo after `repo update`, with what a person needs to review the move."""

    update: Update
    files_changed: int = 0  # files that differ between the old pin and the new one
    # trusted before the move: its recipes that changed, untrusted until `repo trust`
    # (the others stay trusted); None when it was not trusted before
    untrusted_tools: tuple[str, ...] | None = None


def update_all(paths: Paths, name: str | None = None, ref: str | None = None) -> Iterator[Updated]:
    """`repo update`: the named repo, or every git repo (not bundles), one after the other;
    the first failure stops the rest."""
    names = [name] if name else [r.name for r in load_all(paths) if r.kind == "repo"]
    for n in names:
        u = update(paths, n, ref)
        if not u.moved:
            yield Updated(u)
            continue
        files = changed_files(paths, n, u.old_commit, u.repo.commit)
        untrusted = None
        if u.was_trusted:
            same = unchanged_tools(paths, u.repo)
            untrusted = tuple(t for t in tools_in(paths, u.repo) if t not in same)
        yield Updated(u, len(files), untrusted)


def trust(paths: Paths, name: str) -> Repo:
    repo = get(paths, name)
    new = replace(repo, trusted_commit=repo.commit)
    _replace(paths, new)
    return new


def remove(paths: Paths, name: str) -> Repo:
    repo = get(paths, name)
    _save_all(paths, [r for r in load_all(paths) if r.name != name])
    shutil.rmtree(clone_dir(paths, name), ignore_errors=True)
    return repo


def register_bundle(paths: Paths, name: str, origin: str) -> Repo:
    """Record an imported bundle's recipe folder (already in place) as a recipe source."""
    repos = [r for r in load_all(paths) if r.name != name]
    repo = Repo(name=name, url=origin, ref=None, commit="", kind="bundle",
                added_at=datetime.now(UTC).isoformat(timespec="seconds"))
    _save_all(paths, [*repos, repo])
    return repo


def _replace(paths: Paths, new: Repo) -> None:
    _save_all(paths, [new if r.name == new.name else r for r in load_all(paths)])


def tools_in(paths: Paths, repo: Repo) -> list[str]:
    root = recipes_root(clone_dir(paths, repo.name))
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / "recipe.toml").is_file())


def describe(paths: Paths, repo: Repo) -> dict:
    """One repo as `repo list --json` prints it (documented in docs/teams.md; keys only added)."""
    return {"name": repo.name, "kind": repo.kind, "url": repo.url, "ref": repo.ref,
            "commit": repo.commit, "trusted": repo.trusted,
            "trusted_commit": repo.trusted_commit, "pending_trust": repo.pending_trust,
            "path": str(recipes_root(clone_dir(paths, repo.name))), "tools": tools_in(paths, repo)}


def changed_files(paths: Paths, name: str, old: str, new: str) -> list[str]:
    """Files that differ between two commits (both ends of a rename count as changed)."""
    out = git(["diff", "--no-renames", "--name-only", "-z", old, new, "--"],
              cwd=clone_dir(paths, name), what=f"repo update {name}")
    return [f for f in out.split("\0") if f]


def unchanged_tools(paths: Paths, repo: Repo) -> frozenset[str]:
    """The tools whose recipe folder at the pinned commit is the one at the trusted commit.

    Only for a repo whose update waits for trust. Compared with git (content, modes, added
    and removed files); a folder holding a symlink counts as changed, since what it points to
    may have changed elsewhere. If git cannot compare, every recipe counts as changed.
    """
    if not repo.pending_trust or repo.trusted_commit is None:
        return frozenset()
    folder = clone_dir(paths, repo.name)
    root = recipes_root(folder)
    prefix = "" if root == folder else root.relative_to(folder).as_posix() + "/"
    try:
        files = changed_files(paths, repo.name, repo.trusted_commit, repo.commit)
    except RemoteError:
        return frozenset()
    changed = {f[len(prefix):].split("/", 1)[0] for f in files if f.startswith(prefix)}
    return frozenset(t for t in tools_in(paths, repo)
                     if t not in changed and not _holds_symlink(root / t))


def _holds_symlink(folder: Path) -> bool:
    return any(Path(d, n).is_symlink() for d, dirs, files in os.walk(folder) for n in [*dirs, *files])


def pending_notes(paths: Paths) -> list[str]:
    """One line per repo whose update waits for trust: what changed and how to review it."""
    notes = []
    for r in load_all(paths):
        if not r.pending_trust or r.trusted_commit is None:
            continue
        same = unchanged_tools(paths, r)
        changed = [t for t in tools_in(paths, r) if t not in same]
        notes.append(
            f"repo {r.name}: update pending trust ({r.trusted_commit[:12]} -> {r.commit[:12]}); "
            f"changed recipes: {safe(', '.join(changed)) or 'none'}; review with: git -C "
            f"{clone_dir(paths, r.name)} diff {r.trusted_commit[:12]} {r.commit[:12]}, "
            f"then run: sandman repo trust {r.name}")
    return notes
