"""Signatures without a daemon: real ssh-keygen keys, real `-Y sign/verify`, the policy rules."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from sandman import repos
from sandman.commands import signing
from sandman.commands.signing import Signed, Statement, Unverified
from sandman.config import load_config
from sandman.context import Context
from sandman.errors import MissingProgramError, SignatureError, StateError
from sandman.paths import Paths

FP = "f" * 64
IMAGE = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def keygen(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True)
    return key


def allowed(*pairs: tuple[str, Path], namespaces: str = "sandman") -> str:
    return "".join(f'{who} namespaces="{namespaces}" {key.with_suffix(".pub").read_text()}'
                   for who, key in pairs)


def fingerprint_of(key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], check=True, capture_output=True,
                         text=True).stdout
    return out.split()[1]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return {n: keygen(tmp_path, n) for n in ("alice", "mallory")}


@pytest.fixture
def ctx(home: Path) -> Context:
    return Context(paths=Paths.from_env(), config=load_config(Paths.from_env().config_file))


def statement(image: str = IMAGE) -> Statement:
    return Statement("tool", "1.0", FP, image, "2026-11-28T03:00:00Z")


def test_statement_and_blob_round_trip(keys):
    s = statement()
    assert Statement.parse(s.text()) == s
    signed = signing.sign(keys["alice"], s)
    assert Signed.from_blob(signed.blob()) == Signed(s, signed.armored)
    with pytest.raises(ValueError, match="no SSH signature"):
        Signed.from_blob(s.text())
    with pytest.raises(ValueError, match="not a sandman signature"):
        Statement.parse("tool x\n")


def test_a_signature_by_an_allowed_key_names_the_principal_and_key(keys):
    signed = signing.sign(keys["alice"], statement())
    v = signing.verify(signed, allowed(("alice@example.com", keys["alice"])))
    assert v.principal == "alice@example.com"
    assert v.key == f"ED25519 key {fingerprint_of(keys['alice'])}"
    assert v.statement.signed_at == "2026-11-28T03:00:00Z"
    signing.check_binding(v, "tool", "1.0", FP, IMAGE)  # the content it names: no error


def test_a_key_not_in_allowed_signers_is_named_by_its_fingerprint(keys):
    signed = signing.sign(keys["mallory"], statement())
    with pytest.raises(Unverified) as e:
        signing.verify(signed, allowed(("alice@example.com", keys["alice"])))
    assert str(e.value) == (f"signed with ED25519 key {fingerprint_of(keys['mallory'])}, "
                            "which is not in allowed_signers")


def test_an_edited_statement_does_not_verify(keys):
    signed = signing.sign(keys["alice"], statement())
    forged = Signed(statement(OTHER), signed.armored)  # same signature, other content claimed
    with pytest.raises(Unverified, match="does not verify"):
        signing.verify(forged, allowed(("alice@example.com", keys["alice"])))


def test_a_key_allowed_only_for_git_cannot_sign_images(keys):
    signed = signing.sign(keys["alice"], statement())
    with pytest.raises(Unverified):
        signing.verify(signed, allowed(("alice@example.com", keys["alice"]), namespaces="git"))


def test_other_content_under_the_name_fails_the_binding(keys):
    v = signing.verify(signing.sign(keys["alice"], statement()),
                       allowed(("alice@example.com", keys["alice"])))
    with pytest.raises(Unverified, match="other content under the same name"):
        signing.check_binding(v, "tool", "1.0", FP, OTHER)
    with pytest.raises(Unverified, match=r"signed tool@1\.0 fingerprint ffffffffffff, not tool@2\.0"):
        signing.check_binding(v, "tool", "2.0", FP, IMAGE)


def test_no_signers_at_all_is_not_a_pass(keys):
    with pytest.raises(Unverified, match="no allowed_signers"):
        signing.verify(signing.sign(keys["alice"], statement()), "")


def test_a_missing_key_file_is_a_usage_error(tmp_path):
    with pytest.raises(Exception, match="no such key file") as e:
        signing.sign(tmp_path / "nope", statement())
    assert e.value.exit_code == 2  # type: ignore[attr-defined]


def test_policy_config_wins_then_the_repo_then_warn(ctx, tmp_path):
    assert signing.policy_for(ctx, "team") == "warn"  # nothing says otherwise
    (ctx.paths.config_file).parent.mkdir(parents=True, exist_ok=True)
    ctx.paths.config_file.write_text('signatures = "maybe"\n')
    with pytest.raises(StateError, match=r"config.toml:1: signatures: expected"):
        load_config(ctx.paths.config_file)
    ctx.paths.config_file.write_text('signatures = "off"\n')
    assert signing.policy_for(replace(ctx, config=load_config(ctx.paths.config_file)), "x") == "off"


def test_check_applies_each_policy(ctx, keys, monkeypatch):
    signers = ctx.paths.config_dir / signing.SIGNERS_FILE
    signers.parent.mkdir(parents=True, exist_ok=True)
    signers.write_text(allowed(("alice@example.com", keys["alice"])))
    good = signing.sign(keys["alice"], statement())
    args = dict(source="local", tool="tool", version="1.0", fingerprint=FP, image_id=IMAGE,
                where="registry/tool:1.0")

    v = signing.check(ctx, signed=good, **args)
    assert v is not None and v.principal == "alice@example.com"
    assert signing.stored(ctx, IMAGE) == good  # kept for `sandman verify`
    assert signing.stored_source(ctx, IMAGE) == "local"

    for policy, outcome in (("warn", "warning"), ("require", "refused"), ("off", "nothing")):
        monkeypatch.setattr(signing, "policy_for", lambda c, s, p=policy: p)
        ctx.out.lines.clear()  # type: ignore[attr-defined]
        if outcome == "refused":
            with pytest.raises(SignatureError) as e:
                signing.check(ctx, signed=None, **args)
            assert e.value.message == ("tool@1.0 from registry/tool:1.0: unsigned; refused "
                                       "(signature policy: require)")
            assert e.value.exit_code == SignatureError.exit_code
        else:
            assert signing.check(ctx, signed=None, **args) is None
            expected = ["warning: tool@1.0 from registry/tool:1.0: unsigned (signature policy: warn)"]
            assert ctx.out.lines == (expected if outcome == "warning" else [])  # type: ignore[attr-defined]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
                   cwd=cwd, check=True, capture_output=True)


def test_a_repo_speaks_for_signatures_only_at_its_trusted_commit(ctx, keys, tmp_path):
    """A pending update must not bring a new signer along with the recipes that stay trusted."""
    src = tmp_path / "src"
    (src / "recipes").mkdir(parents=True)
    (src / signing.REPO_POLICY_FILE).write_text('policy = "require"\n')
    (src / signing.SIGNERS_FILE).write_text(allowed(("alice@example.com", keys["alice"])))
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "signers")
    repos.add(ctx.paths, "team", str(src))
    assert signing.policy_for(ctx, "team") == "warn"  # never trusted: the repo says nothing
    assert signing.signers_for(ctx, "team") == ("", [])
    repos.trust(ctx.paths, "team")
    assert signing.policy_for(ctx, "team") == "require"
    text, where = signing.signers_for(ctx, "team")
    assert "alice@example.com" in text and where == [str(repos.clone_dir(ctx.paths, "team") / "allowed_signers")]

    (src / signing.SIGNERS_FILE).write_text(allowed(("alice@example.com", keys["alice"]),
                                                   ("mallory@example.com", keys["mallory"])))
    (src / signing.REPO_POLICY_FILE).write_text('policy = "off"\n')
    git(src, "commit", "-qam", "one more signer")
    repos.update(ctx.paths, "team")  # pending trust
    assert signing.policy_for(ctx, "team") == "require"
    text, where = signing.signers_for(ctx, "team")
    assert "mallory" not in text and "alice@example.com" in text
    assert where[0].endswith("allowed_signers at trusted commit " + repos.get(ctx.paths, "team").trusted_commit[:12])
    repos.trust(ctx.paths, "team")
    assert "mallory@example.com" in signing.signers_for(ctx, "team")[0]
    assert signing.policy_for(ctx, "team") == "off"

    (src / signing.REPO_POLICY_FILE).write_text('policy = "always"\n')
    git(src, "commit", "-qam", "bad policy")
    repos.update(ctx.paths, "team")
    repos.trust(ctx.paths, "team")
    with pytest.raises(StateError, match="policy: expected one of require, warn, off"):
        signing.policy_for(ctx, "team")


def test_missing_ssh_keygen_is_a_clear_error(keys, monkeypatch):
    monkeypatch.setattr(signing.shutil, "which", lambda name: None)
    with pytest.raises(Exception, match="ssh-keygen is not installed") as e:
        signing.sign(keys["alice"], statement())
    assert e.value.exit_code == MissingProgramError.exit_code  # type: ignore[attr-defined]
