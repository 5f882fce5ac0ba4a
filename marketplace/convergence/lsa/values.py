"""The values a Compute LSA carries: its header, its availability entries, its content, and
the decoded LSA itself.

Invariants:
- every value is a frozen slots dataclass; a ``ComputeLsa`` also keeps ``raw``, the exact
  bytes it was decoded from (flooding forwards those, never a re-encoding);
- ``from_validated`` is for values already validated by a decoder: it fills a mutable
  draft with the same slots and turns it into the frozen class by ``__class__`` assignment
  (as ``marketplace.resources.model`` does: a ComputeLsa in ~190 ns instead of ~450 ns
  through the slots' descriptors, ~680 ns through ``__init__``). None of these classes has a
  ``__post_init__``, so the objects are identical to the ones ``__init__`` builds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from marketplace.resources.model import DeviceClass, NodeDescriptor
from marketplace.resources.runtimes import RuntimeOffer

_new = object.__new__


def _draft_class(cls: type) -> type:
    """A plain mutable class with the same slots as the frozen slots dataclass ``cls``."""
    return type(f"{cls.__name__}Draft", (), {"__slots__": tuple(f.name for f in fields(cls))})


@dataclass(frozen=True, slots=True)
class LsaHeader:
    """The fixed header. ``lifetime`` is the remaining lifetime in seconds."""

    lsa_type: int
    originator: bytes
    sequence: int
    lifetime: int
    checksum: int
    length: int

    @property
    def key(self) -> tuple[int, bytes]:
        return (self.lsa_type, self.originator)

    @classmethod
    def from_validated(
        cls, lsa_type: int, originator: bytes, sequence: int, lifetime: int, checksum: int, length: int
    ) -> LsaHeader:
        """For values already validated by a decoder (``decode_header``)."""
        h = _new(_HEADER_DRAFT)
        h.lsa_type = lsa_type
        h.originator = originator
        h.sequence = sequence
        h.lifetime = lifetime
        h.checksum = checksum
        h.length = length
        h.__class__ = cls
        return h  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Availability:
    """What is free of one device class right now: milli-devices free and load in basis points."""

    device_class: DeviceClass
    free_milli: int
    load_bp: int

    @classmethod
    def from_validated(cls, device_class: DeviceClass, free_milli: int, load_bp: int) -> Availability:
        """For values already validated by a decoder (the AVAILABILITY TLV's)."""
        a = _new(_AVAILABILITY_DRAFT)
        a.device_class = device_class
        a.free_milli = free_milli
        a.load_bp = load_bp
        a.__class__ = cls
        return a  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class LsaContent:
    """What an originator says in a Compute LSA, before it is numbered and signed."""

    descriptor: NodeDescriptor
    availability: tuple[Availability, ...] = ()
    prices: tuple[tuple[DeviceClass, int], ...] = ()
    domain: int = 0
    attachment: str = ""
    location: tuple[float, float] | None = None
    unknown_tlvs: tuple[tuple[int, bytes], ...] = ()
    #: the runtimes it serves besides the shipped wasm modules (None: no RUNTIMES TLV, shipped modules only)
    runtimes: RuntimeOffer | None = None


@dataclass(frozen=True, slots=True)
class ComputeLsa:
    """A decoded, validated Compute LSA. ``raw`` is the bytes it was decoded from; ``runtimes`` the
    RUNTIMES TLV's offer (None without one)."""

    header: LsaHeader
    descriptor: NodeDescriptor
    availability: tuple[Availability, ...]
    prices: tuple[tuple[DeviceClass, int], ...]
    domain: int
    attachment: str
    location: tuple[float, float] | None
    unknown_tlvs: tuple[tuple[int, bytes], ...]
    raw: bytes
    runtimes: RuntimeOffer | None = None

    @property
    def key(self) -> tuple[int, bytes]:
        return self.header.key

    @property
    def content(self) -> LsaContent:
        return LsaContent(
            self.descriptor,
            self.availability,
            self.prices,
            self.domain,
            self.attachment,
            self.location,
            self.unknown_tlvs,
            self.runtimes,
        )

    @classmethod
    def from_validated(
        cls,
        header: LsaHeader,
        descriptor: NodeDescriptor,
        availability: tuple[Availability, ...],
        prices: tuple[tuple[DeviceClass, int], ...],
        domain: int,
        attachment: str,
        location: tuple[float, float] | None,
        unknown_tlvs: tuple[tuple[int, bytes], ...],
        raw: bytes,
        runtimes: RuntimeOffer | None = None,
    ) -> ComputeLsa:
        """For values already validated by a decoder (``decode_lsa``)."""
        lsa = _new(_LSA_DRAFT)
        lsa.header = header
        lsa.descriptor = descriptor
        lsa.availability = availability
        lsa.prices = prices
        lsa.domain = domain
        lsa.attachment = attachment
        lsa.location = location
        lsa.unknown_tlvs = unknown_tlvs
        lsa.raw = raw
        lsa.runtimes = runtimes
        lsa.__class__ = cls
        return lsa  # type: ignore[return-value]


# made after the classes exist: ``@dataclass(slots=True)`` returns a new class
_HEADER_DRAFT = _draft_class(LsaHeader)
_AVAILABILITY_DRAFT = _draft_class(Availability)
_LSA_DRAFT = _draft_class(ComputeLsa)
