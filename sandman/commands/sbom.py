"""What is inside an installed image, read from the image itself (`sandman sbom`).

The recipe says what should be in an image; the image says what is. So nothing here reads a
recipe: the Debian packages come from the image's own dpkg database (/var/lib/dpkg/status,
copied out of a created, never started, container), the bases from the `io.sandman.bases`
label the build wrote (ref -> image id, the config digest that names every base layer), and
the kits and sources from the `io.sandman.inputs` label (file and sha256, the checksums the
build verified before it used them). An image built before sandman wrote that label says so
(`inputs_recorded: false`) instead of guessing from the recipe.

`--json` is CycloneDX 1.6, made with cyclonedx-python-lib (the CycloneDX project's own
library, maintained, typed, validated against the schema): packages as `pkg:deb` purls,
kits and sources as files with SHA-256 hashes, the bases as container components. It is
imported only by this command, so nothing else pays for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sandman.context import Context
from sandman.errors import ImageMissingError
from sandman.installs import InstallRecord
from sandman.names import LABEL_BASES, LABEL_FINGERPRINT, LABEL_INPUTS
from sandman.text import safe

DPKG_STATUS = "/var/lib/dpkg/status"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str
    source: str  # the Debian source package ("" when it is the package's own name)


@dataclass(frozen=True)
class Input:
    file: str
    sha256: str
    url: str = ""  # sources only: where it was downloaded from


@dataclass(frozen=True)
class Bom:
    key: str
    tool: str
    version: str
    image_id: str
    fingerprint: str
    bases: dict[str, str] = field(default_factory=dict)  # base ref -> image id
    packages: tuple[Package, ...] = ()
    sources: tuple[Input, ...] = ()
    kits: tuple[Input, ...] = ()
    inputs_recorded: bool = True  # False: an image built before sandman labelled its inputs
    dpkg: bool = True  # False: the image has no dpkg database


def parse_dpkg_status(text: str) -> tuple[Package, ...]:
    """The installed packages of a dpkg status file (stanzas; continuation lines skipped)."""
    out = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
        if "Package" not in fields or not fields.get("Status", "").endswith(" installed"):
            continue
        source = fields.get("Source", "").split(" ")[0]
        out.append(Package(fields["Package"], fields.get("Version", ""),
                           fields.get("Architecture", ""), source))
    return tuple(sorted(out, key=lambda p: (p.name, p.architecture)))


def parse_inputs(raw: str | None) -> tuple[tuple[Input, ...], tuple[Input, ...], bool]:
    """(sources, kits, recorded) from the image's inputs label."""
    if not raw:
        return (), (), False
    try:
        data = json.loads(raw)
        sources = tuple(Input(str(f), str(h), str(u)) for f, h, u in data.get("sources", []))
        kits = tuple(Input(str(f), str(h)) for f, h in data.get("kits", []))
    except (ValueError, TypeError, AttributeError):
        return (), (), False
    return sources, kits, True


def parse_bases(raw: str | None) -> dict[str, str]:
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def read(ctx: Context, record: InstallRecord) -> Bom:
    info = ctx.engine.image(record.image_id)
    if info is None:
        raise ImageMissingError(f"{record.key}: image {record.image_id[:19]} is gone; "
                                f"run: sandman install {record.key}")
    files = ctx.engine.read_files(record.image_id, [DPKG_STATUS])
    status = files.get(DPKG_STATUS)
    sources, kits, recorded = parse_inputs(info.labels.get(LABEL_INPUTS))
    return Bom(key=record.key, tool=record.tool, version=record.version, image_id=info.id,
               fingerprint=info.labels.get(LABEL_FINGERPRINT, ""),
               bases=parse_bases(info.labels.get(LABEL_BASES)),
               packages=parse_dpkg_status(status.decode("utf-8", "replace")) if status else (),
               sources=sources, kits=kits, inputs_recorded=recorded, dpkg=status is not None)


def text(bom: Bom) -> str:
    lines = [f"{bom.key}: image {bom.image_id}", f"fingerprint {bom.fingerprint or '-'}"]
    for ref, image_id in sorted(bom.bases.items()):
        lines.append(f"base {safe(ref)} {safe(image_id)}")
    if not bom.bases:
        lines.append("base: not recorded in the image")
    if not bom.inputs_recorded:
        lines.append("sources and kits: not recorded in the image (built before sandman "
                     "labelled them; `sandman upgrade --force` rebuilds)")
    for title, items in (("sources", bom.sources), ("kits", bom.kits)):
        if items:
            lines.append(f"{title}:")
            lines += [f"  {safe(i.file)}  sha256:{safe(i.sha256)}" + (f"  {safe(i.url)}" if i.url else "")
                      for i in items]
    if not bom.dpkg:
        lines.append(f"packages: none ({DPKG_STATUS} is not in the image)")
    else:
        lines.append(f"packages ({len(bom.packages)}):")
        width = max((len(p.name) for p in bom.packages), default=0)
        lines += [f"  {safe(p.name).ljust(width)}  {safe(p.version)}  {safe(p.architecture)}"
                  for p in bom.packages]
    return "\n".join(lines) + "\n"


def cyclonedx_json(bom: Bom) -> str:
    """The same facts as CycloneDX 1.6 JSON."""
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom as CdxBom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    def sha(hexdigest: str) -> list[HashType]:
        return [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest.removeprefix("sha256:"))]

    doc = CdxBom()
    doc.metadata.component = Component(
        name=bom.tool, version=bom.version, type=ComponentType.CONTAINER, bom_ref=bom.image_id,
        hashes=sha(bom.image_id),
        properties=[Property(name="sandman:fingerprint", value=bom.fingerprint),
                    Property(name="sandman:image_id", value=bom.image_id)])
    for ref, image_id in sorted(bom.bases.items()):
        doc.components.add(Component(
            name=ref, version=image_id, type=ComponentType.CONTAINER, bom_ref=f"base:{ref}",
            hashes=sha(image_id), properties=[Property(name="sandman:role", value="base")]))
    for p in bom.packages:
        qualifiers = {"arch": p.architecture} if p.architecture else {}
        if p.source:
            qualifiers["upstream"] = p.source
        purl = PackageURL(type="deb", namespace="debian", name=p.name, version=p.version,
                          qualifiers=qualifiers)
        doc.components.add(Component(name=p.name, version=p.version, type=ComponentType.LIBRARY,
                                     purl=purl, bom_ref=f"deb:{p.name}:{p.architecture}"))
    for role, items in (("source", bom.sources), ("kit", bom.kits)):
        for i in items:
            refs = [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(i.url))] \
                if i.url else []
            doc.components.add(Component(
                name=i.file, type=ComponentType.FILE, bom_ref=f"{role}:{i.file}", hashes=sha(i.sha256),
                external_references=refs, properties=[Property(name="sandman:role", value=role)]))
    doc.register_dependency(doc.metadata.component, list(doc.components))
    return JsonV1Dot6(doc).output_as_string(indent=2)
