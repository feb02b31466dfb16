"""Signed images: who published an image, checked against a team's `allowed_signers`.

The mechanism is OpenSSH's (`ssh-keygen -Y sign / find-principals / verify`), the one git uses
for SSH commit signatures, so a team signs with the keys it already has and lists them in the
same `allowed_signers` format. Signatures use the namespace "sandman": a signature made for
git or for anything else never passes as an image signature.

What is signed is a short statement, not the image bytes: tool, version, fingerprint, the
image id (the sha256 of the image config, which names every layer by digest and which Docker
keeps across push/pull and save/load, so one statement holds for the registry and for bundles),
and the signer's UTC time. The registry's manifest digest is not in it: `docker save` does not
keep one, so a bundle could never match it. A verified statement binds the key to exactly that
content; any other content under the same tag (a re-tagged image) has another id and fails.

Where signatures travel:
- registry: next to `<tool>:<tag>` as `<tool>:<tag>.sig`, a tiny image (an empty layer) whose
  label `io.sandman.signature` holds the statement and its armored signature, base64-encoded;
- bundles: in the manifest (each tool's `signature`);
- locally: `<state>/signatures/<image hex>.sig` once verified or signed here, so `sandman verify`
  can say who signed an installed image without the registry.

Who is allowed to sign comes from the recipe's repository (its `allowed_signers` at the pinned,
trusted commit), plus the user's own `<config>/allowed_signers` (for builtin or local recipes).
A bundle never brings its own signers: that would let it vouch for itself. The policy (off /
warn / require) is config.toml's `signatures` when set (the user's machine, the user's call),
else the repository's `signing.toml` (`policy = "require"`), else warn.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sandman.context import Context
from sandman.errors import MissingProgramError, RemoteError, SignatureError, StateError, UsageError
from sandman.installs import InstallRecord
from sandman.names import LABEL_ROLE, LABEL_SIGNATURE, ROLE_SIGNATURE
from sandman.text import safe

NAMESPACE = "sandman"
SIGNERS_FILE = "allowed_signers"
REPO_POLICY_FILE = "signing.toml"
POLICIES = ("require", "warn", "off")
DEFAULT_POLICY = "warn"
STATEMENT_HEADER = "sandman-signature 1"
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
MAX_BLOB = 64 << 10  # a statement and one signature are well under 2 KiB


@dataclass(frozen=True)
class Statement:
    """What a signer vouches for: this content is tool@version of this fingerprint."""

    tool: str
    version: str
    fingerprint: str
    image_id: str
    signed_at: str  # UTC, ISO 8601, the signer's clock

    def text(self) -> str:
        return (f"{STATEMENT_HEADER}\ntool {self.tool}\nversion {self.version}\n"
                f"fingerprint {self.fingerprint}\nimage {self.image_id}\nsigned-at {self.signed_at}\n")

    @classmethod
    def parse(cls, text: str) -> Statement:
        lines = text.splitlines()
        if not lines or lines[0] != STATEMENT_HEADER:
            raise ValueError("not a sandman signature statement")
        fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
        try:
            return cls(fields["tool"], fields["version"], fields["fingerprint"], fields["image"],
                       fields["signed-at"])
        except KeyError as e:
            raise ValueError(f"the statement lacks {e}") from e


@dataclass(frozen=True)
class Signed:
    """A statement and its armored SSH signature: the unit that travels and is stored."""

    statement: Statement
    armored: str

    def blob(self) -> str:
        return self.statement.text() + self.armored.strip() + "\n"

    @classmethod
    def from_blob(cls, blob: str) -> Signed:
        if len(blob) > MAX_BLOB:
            raise ValueError("signature too large")
        head, sep, tail = blob.partition(ARMOR_BEGIN)
        if not sep:
            raise ValueError("no SSH signature in it")
        return cls(Statement.parse(head), sep + tail)


@dataclass(frozen=True)
class Verified:
    principal: str  # the name allowed_signers gives the key
    key: str  # e.g. "ED25519 key SHA256:..."
    statement: Statement


class Unverified(Exception):
    """Why a signature does not hold (not a user-facing error by itself: the policy decides)."""


# -- ssh-keygen -----------------------------------------------------------------------------

def _ssh_keygen(args: list[str], data: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise MissingProgramError("ssh-keygen is not installed; signatures need OpenSSH 8.2 or "
                                  "newer (Debian: apt-get install openssh-client)")
    try:
        p = subprocess.run([exe, *args], input=data, capture_output=True, text=True, cwd=cwd,
                           timeout=120)
    except subprocess.TimeoutExpired as e:
        raise SignatureError("ssh-keygen did not finish in 120 s (waiting for a passphrase?)") from e
    if re.search(r"(illegal|unknown|invalid) option -- Y", p.stderr):
        raise MissingProgramError("ssh-keygen on this host has no -Y (signatures need OpenSSH "
                                  "8.2 or newer)")
    return p


def sign(key: Path, statement: Statement) -> Signed:
    """Sign with a private key file (or a public key whose private half is in ssh-agent)."""
    if not key.is_file():
        raise UsageError(f"--sign {key}: no such key file")
    with tempfile.TemporaryDirectory(prefix="sandman-sign-") as tmp:
        p = _ssh_keygen(["-Y", "sign", "-f", str(key.absolute()), "-n", NAMESPACE],
                        statement.text(), Path(tmp))
    if p.returncode != 0 or ARMOR_BEGIN not in p.stdout:
        raise UsageError(f"--sign {key}: ssh-keygen cannot sign with it: "
                             f"{_last_line(p.stderr)}")
    return Signed(statement, p.stdout)


def verify(signed: Signed, signers: str) -> Verified:
    """Check signed against the text of an allowed_signers file; Unverified says why not."""
    if not signers.strip():
        raise Unverified("no allowed_signers to check it against")
    with tempfile.TemporaryDirectory(prefix="sandman-verify-") as tmp:
        folder = Path(tmp)
        (folder / "sig").write_text(signed.armored)
        (folder / SIGNERS_FILE).write_text(signers)
        found = _ssh_keygen(["-Y", "find-principals", "-s", "sig", "-f", SIGNERS_FILE], "", folder)
        principals = [x.strip() for x in found.stdout.splitlines() if x.strip()]
        if found.returncode != 0 or not principals:
            who = _ssh_keygen(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", "sig"],
                              signed.statement.text(), folder)
            key = _key_of(who.stdout + who.stderr)
            if who.returncode != 0 or not key:
                raise Unverified(f"the signature does not verify ({_last_line(who.stderr)})")
            raise Unverified(f"signed with {key}, which is not in allowed_signers")
        for principal in principals:
            p = _ssh_keygen(["-Y", "verify", "-f", SIGNERS_FILE, "-I", principal, "-n", NAMESPACE,
                             "-s", "sig"], signed.statement.text(), folder)
            if p.returncode == 0:
                return Verified(principal, _key_of(p.stdout + p.stderr) or "?", signed.statement)
        raise Unverified(f"the signature by {safe(principals[0])} does not verify for this content "
                         f"or namespace ({_last_line(p.stderr)})")


def _key_of(text: str) -> str:
    m = re.search(r"with (\S+ key \S+)", text)
    return m.group(1) if m else ""


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return safe(lines[-1]) if lines else "no reason given"


def check_binding(v: Verified, tool: str, version: str, fingerprint: str, image_id: str) -> None:
    """The signed statement names exactly this tool, version, fingerprint and content."""
    s = v.statement
    if (s.tool, s.version, s.fingerprint) != (tool, version, fingerprint):
        raise Unverified(f"{safe(v.principal)} signed {safe(s.tool)}@{safe(s.version)} fingerprint "
                         f"{safe(s.fingerprint[:12])}, not {tool}@{version} {fingerprint[:12]}")
    if s.image_id != image_id:
        raise Unverified(f"{safe(v.principal)} signed image {safe(s.image_id[:19])}, this is "
                         f"{image_id[:19]}: other content under the same name")


# -- signers and policy ---------------------------------------------------------------------

def _repo_file(ctx: Context, source: str, name: str) -> tuple[str, str] | None:
    """(text, where) of a file at the root of source's repository, as of its *trusted* commit.

    A repository updated to a commit not trusted yet keeps its unchanged recipes trusted
    (repos.unchanged_tools); its new allowed_signers must not ride along with them, or whoever
    can push to the repository could add a key. So a pending update is read at the trusted
    commit (git show), and a repository never trusted contributes nothing.
    """
    from sandman import repos

    repo = next((r for r in repos.load_all(ctx.paths) if r.name == source and r.kind == "repo"), None)
    if repo is None or not repo.trusted_commit:
        return None
    folder = repos.clone_dir(ctx.paths, repo.name)
    if repo.trusted:
        f = folder / name
        if not f.is_file():
            return None
        try:
            return f.read_text(encoding="utf-8"), str(f)
        except (OSError, UnicodeDecodeError) as e:
            raise StateError(f"{f}: cannot read it ({e})") from e
    where = f"{folder / name} at trusted commit {repo.trusted_commit[:12]}"
    try:
        listed = repos.git(["ls-tree", "--name-only", repo.trusted_commit, "--", name], cwd=folder,
                           what=where)
        if listed != name:
            return None
        return repos.git(["show", f"{repo.trusted_commit}:{name}"], cwd=folder, what=where), where
    except RemoteError as e:
        raise StateError(f"{where}: cannot read it ({e.message})") from e


def signers_for(ctx: Context, source: str) -> tuple[str, list[str]]:
    """The allowed_signers text for images of recipes from source, and where it came from."""
    found = []
    repo_file = _repo_file(ctx, source, SIGNERS_FILE)
    if repo_file is not None:
        found.append(repo_file)
    mine = ctx.paths.config_dir / SIGNERS_FILE
    if mine.is_file():
        try:
            found.append((mine.read_text(encoding="utf-8"), str(mine)))
        except (OSError, UnicodeDecodeError) as e:
            raise StateError(f"{mine}: cannot read allowed signers ({e})") from e
    return "".join(text + "\n" for text, _ in found), [where for _, where in found]


def policy_for(ctx: Context, source: str) -> str:
    """config.toml `signatures`, else the repo's signing.toml `policy`, else warn."""
    mine = ctx.config.signatures
    if mine:
        return mine
    repo_file = _repo_file(ctx, source, REPO_POLICY_FILE)
    if repo_file is None:
        return DEFAULT_POLICY
    import tomllib

    text, where = repo_file
    try:
        value = tomllib.loads(text).get("policy")
    except tomllib.TOMLDecodeError as e:
        raise StateError(f"{where}: cannot read the repository's signature policy ({e})") from e
    if value not in POLICIES:
        raise StateError(f"{where}: policy: expected one of {', '.join(POLICIES)}, got {safe(str(value))}")
    return str(value)


def check(ctx: Context, *, source: str, tool: str, version: str, fingerprint: str, image_id: str,
          signed: Signed | None, where: str, unsigned: str = "unsigned") -> Verified | None:
    """Apply the policy to one image about to be installed; returns who signed it, if anyone.

    `require` turns any failure into SignatureError, `warn` into one warning line,
    `off` checks nothing. A verified signature is kept locally for `sandman verify`.
    """
    policy = policy_for(ctx, source)
    if policy == "off":
        return None
    key = f"{tool}@{version}"
    try:
        if signed is None:
            raise Unverified(unsigned)
        text, files = signers_for(ctx, source)
        if not files:
            raise Unverified(f"no allowed_signers for source '{safe(source)}' (neither the repo's "
                             f"nor {ctx.paths.config_dir / SIGNERS_FILE})")
        v = verify(signed, text)
        check_binding(v, tool, version, fingerprint, image_id)
    except Unverified as e:
        line = f"{key} from {where}: {e}"
        if policy == "require":
            raise SignatureError(f"{line}; refused (signature policy: require)") from e
        ctx.out.warn(f"{line} (signature policy: warn)")
        return None
    store(ctx, image_id, signed, source)
    ctx.out.info(f"{key}: signed by {v.principal} ({v.key}) at {v.statement.signed_at}")
    return v


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the local store --------------------------------------------------------------------------

def _stored(ctx: Context, image_id: str) -> Path:
    return ctx.paths.state_dir / "signatures" / f"{image_id.removeprefix('sha256:')}.sig"


def store(ctx: Context, image_id: str, signed: Signed, source: str) -> None:
    """Keep a signature, and the recipe source whose signers it is checked against (a bundle's
    tool installs from the bundle's source, but its signers are those of its original repo)."""
    from sandman.state import atomic_write

    f = _stored(ctx, image_id)
    atomic_write(f, signed.blob().encode())
    atomic_write(f.with_suffix(".source"), source.encode())


def stored_source(ctx: Context, image_id: str) -> str | None:
    try:
        return _stored(ctx, image_id).with_suffix(".source").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def stored(ctx: Context, image_id: str) -> Signed | None:
    f = _stored(ctx, image_id)
    try:
        return Signed.from_blob(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise StateError(f"{f}: unreadable stored signature ({e}); remove it") from e


# -- the registry -----------------------------------------------------------------------------

def signature_ref(image_ref: str) -> str:
    """`<registry>/<tool>:<tag>.sig` next to the image's `<registry>/<tool>:<tag>`."""
    return f"{image_ref}.sig"


def push_signature(ctx: Context, image_ref: str, signed: Signed) -> str:
    """Push the signature as a one-empty-layer image; the local name is removed after."""
    ref = signature_ref(image_ref)
    encoded = base64.b64encode(signed.blob().encode()).decode()
    with tempfile.TemporaryDirectory(prefix="sandman-sig-") as tmp:
        empty = Path(tmp) / "empty.tar"
        with tarfile.open(empty, "w"):
            pass
        ctx.engine.import_tarball(empty, ref, [f"LABEL {LABEL_SIGNATURE}={encoded}",
                                               f"LABEL {LABEL_ROLE}={ROLE_SIGNATURE}"])
    try:
        ctx.engine.push(ref, ctx.out.step)
    finally:
        ctx.engine.remove_image(ref)
    return ref


def fetch_signature(ctx: Context, image_ref: str) -> tuple[Signed | None, str]:
    """The signature pushed next to image_ref, or None and why there is none to use."""
    ref = signature_ref(image_ref)
    try:
        info = ctx.engine.pull(ref)
    except RemoteError as e:
        ctx.out.step(f"no signature {ref}: {e.message}")
        return None, f"unsigned (no {ref} in the registry)"
    try:
        raw = info.labels.get(LABEL_SIGNATURE, "")
        return Signed.from_blob(base64.b64decode(raw, validate=True).decode()), ""
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        return None, f"unreadable signature in {ref} ({safe(str(e))})"
    finally:
        ctx.engine.remove_image(ref)


def check_pulled(ctx: Context, image_ref: str, *, source: str, tool: str, version: str,
                 fingerprint: str, image_id: str, local_tag: str) -> None:
    """After a pull, before the image gets its local tag (local_tag): apply the policy. Any
    failure, a refusal or a check that cannot run (no ssh-keygen), leaves it unnamed."""
    if policy_for(ctx, source) == "off":
        return
    signed, unsigned = fetch_signature(ctx, image_ref)
    check(ctx, source=source, tool=tool, version=version, fingerprint=fingerprint,
          image_id=image_id, signed=signed, where=image_ref, unsigned=unsigned)


# -- what the CLI calls -------------------------------------------------------------------------

def sign_image(ctx: Context, key: Path, *, source: str, tool: str, version: str,
               fingerprint: str, image_id: str) -> Signed:
    """Sign one image here (before anything is pushed or written) and keep it locally."""
    signed = sign(key, Statement(tool, version, fingerprint, image_id, now()))
    store(ctx, image_id, signed, source)
    return signed


@dataclass(frozen=True)
class Report:
    key: str
    image_id: str
    principal: str
    signing_key: str
    signed_at: str
    signers: tuple[str, ...]  # the allowed_signers files it was checked against

    def to_json(self) -> dict:
        return dict(self.__dict__, signers=list(self.signers))


def verify_installed(ctx: Context, record: InstallRecord, remote: str | None) -> Report:
    """Who signed an installed image: the signature kept here, else the one next to `remote`
    (the image's registry reference); SignatureError when there is none or it fails."""
    signed = stored(ctx, record.image_id)
    if signed is None and remote:
        signed, _ = fetch_signature(ctx, remote)
    if signed is None:
        raise SignatureError(f"{record.key}: no signature for image {record.image_id[:19]} here"
                             + (f" nor in {signature_ref(remote)}" if remote
                                else " (and no registry configured to look in)"))
    source = stored_source(ctx, record.image_id) or record.source
    text, files = signers_for(ctx, source)
    try:
        if not files:
            raise Unverified(f"no allowed_signers for source '{safe(source)}'")
        v = verify(signed, text)
        check_binding(v, record.tool, record.version, record.fingerprint, record.image_id)
    except Unverified as e:
        raise SignatureError(f"{record.key}: {e}") from e
    store(ctx, record.image_id, signed, source)
    return Report(record.key, record.image_id, v.principal, v.key, v.statement.signed_at,
                  tuple(files))


def bundle_signature(ctx: Context, key: Path | None, *, source: str, tool: str, version: str,
                     fingerprint: str, image_id: str) -> str:
    """The `signature` of a bundle manifest entry: signed now with key, else the one kept here
    (from `push --sign` or a verified install), so a re-export keeps the publisher's."""
    if key is not None:
        return sign_image(ctx, key, source=source, tool=tool, version=version,
                          fingerprint=fingerprint, image_id=image_id).blob()
    have = stored(ctx, image_id)
    return have.blob() if have else ""


def check_bundle_tool(ctx: Context, *, source: str, tool: str, version: str, fingerprint: str,
                      image_id: str, blob: str, where: Path, claimed: str | None = None) -> None:
    """Before a bundle loads anything: its tool's signature against the signers of `source`
    (one of governing_sources; `claimed`, the manifest's word, only says where it was made)."""
    signed, unsigned = None, "unsigned"
    if blob:
        try:
            signed = Signed.from_blob(blob)
        except ValueError as e:
            unsigned = f"unreadable signature ({e})"
    label = str(where) if claimed in (None, source) else \
        f"{where} (says source '{safe(claimed)}', policy of '{safe(source)}')"
    check(ctx, source=source, tool=tool, version=version, fingerprint=fingerprint,
          image_id=image_id, signed=signed, where=label, unsigned=unsigned)


# -- provenance: which policy holds, and what this home knows of an image ----------------------

def _repos_with_tool(ctx: Context, tool: str) -> list[tuple[str, Path]]:
    """(repo name, recipe file) of every recipe repository that has a recipe for tool."""
    return [(e.source.name, e.recipe_file) for e in ctx.catalog.entries()
            if e.tool == tool and e.source.kind == "repo"]


def _gives(ctx: Context, source: str, recipe_file: Path, fingerprint: str) -> bool:
    """Some version of the recipe at recipe_file has this fingerprint here."""
    from sandman.build import kits_dir, plan_build
    from sandman.errors import SandmanError
    from sandman.recipe_check import load_recipe

    folder = kits_dir(ctx.paths, ctx.config.kits_dir, ctx.env)
    try:
        recipe = load_recipe(recipe_file)
    except SandmanError:
        return False
    for v in recipe.versions:
        with contextlib.suppress(SandmanError):
            if plan_build(recipe, v, source=source, kits_folder=folder,
                          engine=ctx.engine).fingerprint == fingerprint:
                return True
    return False


def governing_sources(ctx: Context, tool: str, fingerprint: str, *, claimed: str) -> list[str]:
    """The sources whose signature policy an image of tool at fingerprint answers to: the repos
    whose recipe gives that fingerprint (what the image says it is built from), and the
    claimed source when it is a known repo. A claimed source that names no known repo is
    refused (SignatureError) when any repo with a recipe for tool requires signatures: a
    manifest must not pick the policy it is checked under."""
    from sandman import repos

    known = {r.name for r in repos.load_all(ctx.paths) if r.kind == "repo"}
    having = _repos_with_tool(ctx, tool)
    if claimed not in known:
        strict = [name for name, _ in having if policy_for(ctx, name) == "require"]
        if strict:
            raise SignatureError(
                f"{tool}: the manifest says source '{safe(claimed)}', which is no recipe repo "
                f"here, and repo '{strict[0]}' requires signatures for {tool}; refused")
    out = [claimed] if claimed in known else []
    for name, recipe_file in having:
        if name not in out and _gives(ctx, name, recipe_file, fingerprint):
            out.append(name)
    return out or [claimed]


def _built_dir(ctx: Context) -> Path:
    return ctx.paths.state_dir / "built"


def record_built(ctx: Context, image_id: str) -> None:
    """This home built image_id itself from a recipe: its own work, trusted like its recipe."""
    from sandman.state import atomic_write

    atomic_write(_built_dir(ctx) / image_id.removeprefix("sha256:"), b"built\n")


def built_here(ctx: Context, image_id: str, tool: str, version: str) -> bool:
    """This home built image_id (its record, or an install of it whose origin says built)."""
    if (_built_dir(ctx) / image_id.removeprefix("sha256:")).is_file():
        return True
    from sandman import installs

    rec = installs.load(ctx.paths, tool, version)
    return rec is not None and rec.image_id == image_id and rec.origin == "built"


def verified_pulls(ctx: Context) -> set[tuple[str, str]]:
    """(source, image id) pairs this process pulled with the source's policy applied: an
    install that follows needs no second look at the same signature."""
    return ctx.__dict__.setdefault("_verified_pulls", set())


def check_provenance(ctx: Context, *, source: str, bundle: bool, tool: str, version: str,
                     fingerprint: str, image_id: str, built: bool, remote: str | None) -> None:
    """Before an install (or a run) uses image_id for source's recipe: under `require`, the
    image must be one this home built, or one whose signature verifies against the signers
    of the source being installed. A tag on the daemon proves nothing: another home (with
    another policy) may have pulled it. SignatureError (97) otherwise; nothing is rooted."""
    if built:
        record_built(ctx, image_id)
        return
    sources = [source]
    if bundle:  # a bundle's recipes answer to the repos its images say they come from
        from sandman import repos

        known = {r.name for r in repos.load_all(ctx.paths) if r.kind == "repo"}
        first = stored_source(ctx, image_id)
        sources = [first] if first in known else []
        sources += [name for name, recipe_file in _repos_with_tool(ctx, tool)
                    if name not in sources and _gives(ctx, name, recipe_file, fingerprint)]
        sources = sources or [source]
    for src in sources:
        if policy_for(ctx, src) != "require" or (src, image_id) in verified_pulls(ctx):
            continue
        if built_here(ctx, image_id, tool, version):
            return
        signed, where = stored(ctx, image_id), "the signature kept here"
        unsigned = "no signature here, and this home did not build it"
        if signed is None and remote:  # the image's name in the configured registry
            signed, unsigned = fetch_signature(ctx, remote)
            where = signature_ref(remote)
        check(ctx, source=src, tool=tool, version=version, fingerprint=fingerprint,
              image_id=image_id, signed=signed, where=f"image {image_id[:19]} ({where})",
              unsigned=unsigned)
