"""Build inputs: which files of a recipe folder may go into an image.

A recipe names files, folders and a Dockerfile by relative path; each must be, after symlinks,
a regular file (or folder) inside the recipe's own folder, or a shared recipe could copy the
host's /etc/shadow into an image. The rule is checked when a recipe is loaded (input_problem)
and again, folders walked, when the build context is made (build_inputs).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sandman.errors import RecipeError, UnsafeInputError
from sandman.recipe_source import dotted, locate
from sandman.recipes import Recipe, Version
from sandman.text import quoted, safe


def input_problem(folder: Path, rel: str, *, allow_dir: bool = True) -> tuple[str, bool] | None:
    """Why `rel` (from a recipe in `folder`) cannot be a build input, or None when it can.

    The flag says whether the problem is an unsafe input (exit 108) rather than a plain
    mistake such as a missing file (exit 112).

    A build input must be, after resolving symlinks, `..` and `.`, a regular file (or, where
    allowed, a folder) inside the recipe's own folder: `ln -s /etc etc` with
    `files = ["etc/shadow"]` must not copy the host's /etc/shadow into an image.
    """
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        return f"{quoted(rel)} must be a relative path inside the recipe folder", True
    root = folder.resolve()
    real = (root / p).resolve()
    if not real.is_relative_to(root):
        return (f"{quoted(rel)} resolves to {safe(real)}, outside the recipe folder {safe(root)}; "
                "build inputs must be regular files inside it"), True
    try:
        st = real.stat()
    except FileNotFoundError:
        return f"{quoted(rel)} does not exist in {safe(folder)}", False
    except OSError as e:
        return f"{quoted(rel)} cannot be read: {e.strerror}", False
    if stat.S_ISREG(st.st_mode) or (allow_dir and stat.S_ISDIR(st.st_mode)):
        return None
    kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
    want = "a regular file or folder" if allow_dir else "a regular file"
    return f"{quoted(rel)} is {kind}, not {want}", True


def build_inputs(recipe: Recipe, version: Version) -> dict[str, Path]:
    """The build context from the recipe folder: archive name -> real path of a regular file.

    Checked again at build time, not only when the recipe was loaded: a folder's content is
    walked only here, and every entry in it (a symlink too) must resolve to a regular file or folder
    inside the recipe folder, or nothing is built.
    """
    b = version.build
    rels = [("files", rel) for rel in b.files]
    if b.dockerfile:
        rels.append(("dockerfile", b.dockerfile))
    out: dict[str, Path] = {}
    prefix = "" if b.dockerfile else "files/"
    root = recipe.folder.resolve()
    for key, rel in rels:
        where = ("versions", version.version, key)
        problem = input_problem(recipe.folder, rel, allow_dir=key == "files")
        if problem:
            cls = UnsafeInputError if problem[1] else RecipeError
            raise cls(f"{locate(recipe.path, where)}: {safe(dotted(where))}: {problem[0]}")
        real = (root / rel).resolve()
        if real.is_dir():
            _walk(recipe, where, root, real, rel, prefix, out, {real})
        else:
            out[(prefix if key == "files" else "") + rel] = real
    return out


def _walk(recipe: Recipe, where: tuple[str, ...], root: Path, folder: Path, shown: str,
          prefix: str, out: dict[str, Path], seen: set[Path]) -> None:
    """Add the regular files under `folder` (spelled `shown` in the recipe) to `out`."""
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = f"{shown.rstrip('/')}/{entry.name}"
        real = Path(entry.path).resolve()
        problem = None
        if not real.is_relative_to(root):
            problem = f"{quoted(name)} resolves to {safe(real)}, outside the recipe folder {safe(root)}"
        else:
            try:
                mode = real.stat().st_mode
            except OSError as e:
                problem = f"{quoted(name)} cannot be read: {e.strerror}"
            else:
                if stat.S_ISDIR(mode):
                    if real not in seen:  # a link to a folder already walked: no loop
                        _walk(recipe, where, root, real, name, prefix, out, seen | {real})
                    continue
                if not stat.S_ISREG(mode):
                    problem = f"{quoted(name)} is a device, FIFO or socket, not a regular file"
        if problem:
            raise UnsafeInputError(f"{locate(recipe.path, where)}: {safe(dotted(where))}: {problem}; "
                                   "build inputs must be regular files inside the recipe folder")
        out[prefix + str(Path(name))] = real
