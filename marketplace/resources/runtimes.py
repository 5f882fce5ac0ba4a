"""Runtimes: what a provider runs, what an order needs run, and whether the one serves the other.

A provider advertises a ``RuntimeOffer`` in its Compute LSA (the RUNTIMES TLV, docs/tlv.md):

- ``buyer_wasm``: it runs buyers' own WASI modules, fetched by digest (every agent runs the
  modules shipped with CONA, named by name, whatever it advertises);
- ``nondeterministic``: it also runs modules that import clocks or randomness (they cannot be
  verified by re-execution);
- ``container``: it runs OCI images (``ContainerOffer``: the architecture it runs them on, in
  Go's names as image configs spell them, whether an order may have the network, whether
  accelerators are passed in through CDI), and ``images`` lists the registry references it
  allows besides uploaded archives (a repository allows every tag and digest of it; a
  reference with a tag or digest exactly that one);
- ``programs``: the native programs it offers, by name.

An LSA without the TLV (an agent older than it) has no offer: ``None`` serves the shipped
modules and nothing else.

An order's ``WorkloadNeed`` is what its document (``marketplace.engine.spec``) asks of a
provider, with the facts of its artifacts (an image archive's architecture). ``unmet(offer,
need)`` lists why a provider cannot serve it, one ``(reason, message)`` per fault, empty when
it can: the matcher's ``RuntimeSupport`` filter and the agent's refusal speak the same rule.

Image references (``parse_ref``, ``ImageRef``, ``RegistryPolicy``) live here because both
sides read them: the agent's allowlist and the engine's filter.

Pure: no I/O. Invariants: offers and needs are frozen and canonical (names sorted, no
duplicates), so equal offers compare and encode equal; ``unmet`` of a shipped-module need is
always empty; every message names the thing asked for and what is offered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Iterable

from marketplace.errors import InputError

#: the Go names of architectures (what an image config says) by ``platform.machine()``
GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
          "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "i686": "386", "loongarch64": "loong64"}
#: an architecture as an LSA may name it: Go's names (``GOARCH``) and any later one of the same form
ARCH_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
#: a native program's name: what buyers write, and what an LSA carries (native.py's rule)
PROGRAM_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: the longest registry reference an LSA carries (a sub-TLV holds 255 bytes)
MAX_REF_BYTES = 255
_REF = re.compile(r"^(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+)"
                  r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


class Runtime(StrEnum):
    WASM = "wasm"
    NATIVE = "native"
    CONTAINER = "container"


class ImageRejected(InputError):
    """An image this provider will not run (corrupt, another architecture, not allowed)."""

    code = "image-rejected"


class InvalidOffer(InputError):
    """A runtime offer that cannot be advertised (a bad program name, reference or architecture)."""

    code = "invalid-runtime-offer"


def goarch(machine: str) -> str:
    """The Go name of ``machine`` (``platform.machine()``), or the machine name lower-cased."""
    return GOARCH.get(machine.lower(), machine.lower())


# ---------------------------------------------------------------------------- image references


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed registry reference: ``repository`` (with its host), and a tag and/or digest."""

    repository: str
    tag: str | None
    digest: str | None

    @property
    def host(self) -> str:
        return self.repository.split("/", 1)[0]

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def allows(self, ref: ImageRef) -> bool:
        """This allowlist entry allows ``ref``: a bare repository every tag and digest of it, an entry
        with a tag or digest exactly that."""
        return self.repository == ref.repository and (self.tag is None or self.tag == ref.tag) and \
            (self.digest is None or self.digest == ref.digest)


def parse_ref(text: str) -> ImageRef:
    """``host[:port]/path[:tag][@sha256:...]``; the host is required (no implicit docker.io)."""
    m = _REF.match(text.strip()) if isinstance(text, str) else None
    host = m["repo"].split("/")[0] if m else ""
    if not m or ("." not in host and ":" not in host and host != "localhost"):
        raise ImageRejected(f"{text!r} is not a registry reference with a host", field="image",
                            hint="HOST[:PORT]/PATH[:TAG][@sha256:DIGEST], e.g. localhost:5000/tools/busybox:1")
    return ImageRef(m["repo"], m["tag"], m["digest"])


@dataclass(frozen=True, slots=True)
class RegistryPolicy:
    """The provider's allowlist of registry images (empty: registry references are refused)."""

    allowed: tuple[ImageRef, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[str]) -> RegistryPolicy:
        return cls(tuple(parse_ref(e) for e in entries))

    def check(self, text: str) -> ImageRef:
        """The reference, when an entry allows it (see ``ImageRef.allows``)."""
        ref = parse_ref(text)
        if any(entry.allows(ref) for entry in self.allowed):
            return ref
        raise ImageRejected(f"{ref} is not on this provider's image allowlist", field="image",
                            hint="the provider allows: " + (", ".join(map(str, self.allowed)) or "no registry image"))


# ---------------------------------------------------------------------------- offers and needs


@dataclass(frozen=True, slots=True)
class ContainerOffer:
    """The container runtime a provider serves: ``arch`` (Go name), network, CDI devices."""

    arch: str
    network: bool = False
    devices: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or not ARCH_NAME.match(self.arch):
            raise InvalidOffer(f"container architecture {self.arch!r} is not an architecture name",
                               field="runtimes.container.arch", hint="Go's names: " + ", ".join(sorted(
                                   set(GOARCH.values()))))


@dataclass(frozen=True, slots=True)
class RuntimeOffer:
    """What a provider runs besides the shipped modules (see the module docstring)."""

    buyer_wasm: bool = True
    nondeterministic: bool = True
    container: ContainerOffer | None = None
    images: tuple[str, ...] = ()
    programs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        images = tuple(sorted(set(self.images)))
        for text in images:
            if len(text.encode()) > MAX_REF_BYTES:
                raise InvalidOffer(f"image reference {text[:40]!r}... is over {MAX_REF_BYTES} bytes",
                                   field="runtimes.images")
            try:
                if str(parse_ref(text)) != text:
                    raise InvalidOffer(f"image reference {text!r} is not in its canonical form",
                                       field="runtimes.images", hint=str(parse_ref(text)))
            except ImageRejected as exc:
                raise InvalidOffer(exc.message, field="runtimes.images", hint=exc.hint) from None
        if images and self.container is None:
            raise InvalidOffer("registry images are offered without a container runtime", field="runtimes.images")
        programs = tuple(sorted(set(self.programs)))
        for name in programs:
            if not isinstance(name, str) or not PROGRAM_NAME.match(name):
                raise InvalidOffer(f"native program name {name!r} is not valid", field="runtimes.programs",
                                   hint="lower-case letters, digits, '.', '_', '-'; at most 64")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "programs", programs)

    @property
    def runtimes(self) -> tuple[Runtime, ...]:
        """The runtimes offered, in a fixed order (wasm always: the shipped modules)."""
        return tuple(r for r, on in ((Runtime.WASM, True), (Runtime.NATIVE, bool(self.programs)),
                                     (Runtime.CONTAINER, self.container is not None)) if on)

    def allows_image(self, ref: ImageRef) -> bool:
        return any(parse_ref(entry).allows(ref) for entry in self.images)

    def to_dict(self) -> dict[str, Any]:
        c = self.container
        return {"runtimes": [str(r) for r in self.runtimes], "buyer_wasm": self.buyer_wasm,
                "nondeterministic": self.nondeterministic,
                "container": None if c is None else {"arch": c.arch, "network": c.network, "devices": c.devices},
                "images": list(self.images), "programs": list(self.programs)}


#: what an LSA without a RUNTIMES TLV serves: the shipped wasm modules only
SHIPPED_ONLY: RuntimeOffer | None = None


@dataclass(frozen=True, slots=True)
class WorkloadNeed:
    """What an order's workload asks of a provider (see the module docstring). ``image``: a registry
    reference (None for an uploaded archive); ``arches``: the architectures (Go names) an uploaded
    archive has images for (a multi-platform archive has several; empty: not known here)."""

    runtime: Runtime
    buyer_module: bool = False
    deterministic: bool = True
    program: str | None = None
    image: str | None = None
    arches: tuple[str, ...] = ()
    network: bool = False
    devices: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "runtime", Runtime(self.runtime))
        object.__setattr__(self, "arches", tuple(sorted(set(self.arches))))

    @property
    def trivial(self) -> bool:
        """Every provider serves it (a shipped wasm module)."""
        return self.runtime == Runtime.WASM and not self.buyer_module

    def to_dict(self) -> dict[str, Any]:
        """Canonical: only what differs from the defaults, so a need's document is short and stable."""
        out: dict[str, Any] = {"runtime": str(self.runtime)}
        for name, default in (("buyer_module", False), ("deterministic", True), ("program", None), ("image", None),
                              ("arches", ()), ("network", False), ("devices", False)):
            value = getattr(self, name)
            if value != default:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> WorkloadNeed:
        return cls(**{k: tuple(v) if k == "arches" else v for k, v in doc.items()})

    def canonical(self) -> list[Any]:
        return [self.runtime.value, self.buyer_module, self.deterministic, self.program, self.image,
                list(self.arches), self.network, self.devices]


def unmet(offer: RuntimeOffer | None, need: WorkloadNeed | None) -> tuple[tuple[str, str], ...]:
    """Why a provider offering ``offer`` cannot serve ``need``: ``(reason, message)`` pairs, empty when it can.

    Reasons (stable): ``runtime`` (not offered at all), ``wasm-modules``, ``nondeterministic``,
    ``program``, ``image``, ``platform``, ``network``, ``devices``."""
    if need is None or need.trivial:
        return ()
    if need.runtime == Runtime.WASM:
        return _wasm(offer, need)
    if need.runtime == Runtime.NATIVE:
        programs = offer.programs if offer is not None else ()
        if need.program in programs:
            return ()
        return (("program", f"needs the native program {need.program!r}; provider offers "
                            + (", ".join(programs) if programs else "no native program")),)
    return _container(offer, need)


def _wasm(offer: RuntimeOffer | None, need: WorkloadNeed) -> tuple[tuple[str, str], ...]:
    if offer is None:
        return (("runtime", "needs a buyer's WebAssembly module; provider advertises no runtimes (shipped "
                            "modules only)"),)
    out = []
    if not offer.buyer_wasm:
        out.append(("wasm-modules", "needs a buyer's WebAssembly module; provider runs shipped modules only"))
    if not need.deterministic and not offer.nondeterministic:
        out.append(("nondeterministic", "needs clock or random imports; provider runs deterministic modules only"))
    return tuple(out)


def _container(offer: RuntimeOffer | None, need: WorkloadNeed) -> tuple[tuple[str, str], ...]:
    c = offer.container if offer is not None else None
    if c is None:
        return (("runtime", "needs a container runtime; provider runs no containers"),)
    out = []
    if need.image is not None:
        try:
            ok = offer.allows_image(parse_ref(need.image))  # type: ignore[union-attr]
        except ImageRejected:
            ok = False
        if not ok:
            allowed = ", ".join(offer.images) if offer.images else "no registry image"  # type: ignore[union-attr]
            out.append(("image", f"needs the registry image {need.image}; provider allows {allowed}"))
    if need.arches and c.arch not in need.arches:
        wanted = " or ".join(f"linux/{a}" for a in need.arches)
        out.append(("platform", f"needs {wanted}; provider runs linux/{c.arch} containers"))
    if need.network and not c.network:
        out.append(("network", "needs the network; provider runs containers without it"))
    if need.devices and not c.devices:
        out.append(("devices", "needs accelerators in the container; provider passes none in (no CDI)"))
    return tuple(out)
