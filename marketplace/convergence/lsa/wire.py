"""The Compute LSA's wire vocabulary: sizes, header offsets, struct formats and type codes.

Everything here is a constant of the format that ``docs/tlv.md`` documents byte by byte;
the codec tables (``tables``) and the header code (``header``) read it, nothing writes it.

Invariants:
- all integers are big-endian (network order), floats IEEE 754 binary64;
- a wire code is never reused: a new TLV or sub-TLV gets a new code, and an old one is
  only ever retired;
- ``CLASS_BY_CODE`` and ``PRECISION_BY_CODE`` have 256 entries, ``None`` where a code is
  not defined, so the decoder maps a byte to its enum member with one index.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from marketplace.resources.model import DeviceClass, Precision

COMPUTE_LSA = 1
VERSION = 1
HEADER_SIZE = 32
#: IS-IS originatingLSPBufferSize (ISO 10589 / RFC 1195: 1492)
MAX_LSA_SIZE = 1492
MAX_SEQUENCE = 0xFFFFFFFF
MAX_LIFETIME = 0xFFFF
SIGNATURE_SIZE = 65
TLV_HEADER = 3
SIG_TLV_SIZE = TLV_HEADER + SIGNATURE_SIZE

# byte offsets inside the header
OFF_LIFETIME = 0
OFF_TYPE = 2
OFF_VERSION = 3
OFF_ORIGINATOR = 4
OFF_SEQUENCE = 24
OFF_CHECKSUM = 28
OFF_LENGTH = 30
#: the checksummed region starts after the lifetime; the checksum sits at this offset in it
CHECKSUM_REGION_START = 2

HEADER = struct.Struct("!HBB20sIHH")
TLV = struct.Struct("!BH")  # type, length of a top-level TLV
SUB_TLV = struct.Struct("!BB")  # type, length of a sub-TLV
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
U64 = struct.Struct("!Q")
F64 = struct.Struct("!d")
CORE = struct.Struct("!BHI")  # device class, share_milli, count
FLOP = struct.Struct("!Bd")  # precision, FLOP/s
AVAIL = struct.Struct("!BIH")  # device class, free milli-devices, load basis points
PRICE_SIZE = 33  # device class u8, price uint256
LOCATION = struct.Struct("!dd")  # latitude, longitude
MAX_LOAD_BP = 10000


class Tlv(IntEnum):
    """Top-level TLV types. Values are wire codes; never reuse one."""

    NODE = 1
    DEVICE = 2
    AVAILABILITY = 3
    PRICE = 4
    DOMAIN = 5
    ATTACHMENT = 6
    LOCATION = 7
    RUNTIMES = 8
    SIGNATURE = 255


class NodeSub(IntEnum):
    """Sub-TLVs of the NODE TLV."""

    HOSTNAME = 1
    ARCH = 2
    MEMORY_MIB = 3
    DISK_GIB = 4
    NUMA_NODES = 5


class DeviceSub(IntEnum):
    """Sub-TLVs of a DEVICE TLV (one DEVICE TLV per ``DeviceCapability``)."""

    CORE = 1  # class u8, share_milli u16, count u32
    MODEL = 2
    VENDOR = 3
    COMPUTE_UNITS = 4
    CLOCK_MHZ = 5
    FLOPS = 6  # n x (precision u8, f64)
    MEMORY_MIB = 7
    BANDWIDTH_GBPS = 8
    INTERCONNECT = 9
    FEATURE = 10  # repeated, one feature each, in ascending order


class RuntimeSub(IntEnum):
    """Sub-TLVs of the RUNTIMES TLV (``marketplace.resources.runtimes.RuntimeOffer``)."""

    WASM = 1  # flags u8: bit 0 buyers' modules, bit 1 non-deterministic modules
    CONTAINER = 2  # flags u8 (bit 0 network, bit 1 CDI devices), then the architecture (UTF-8, Go name)
    IMAGE = 3  # repeated: an allowed registry reference (UTF-8), in ascending order
    PROGRAM = 4  # repeated: a native program's name (UTF-8), in ascending order


#: RUNTIMES flag bits
WASM_BUYER_MODULES = 0x01
WASM_NONDETERMINISTIC = 0x02
CONTAINER_NETWORK = 0x01
CONTAINER_DEVICES = 0x02


#: wire code -> member, None for codes that are not defined (so one index, no enum call)
CLASS_BY_CODE: tuple[DeviceClass | None, ...] = tuple(
    {int(c): c for c in DeviceClass}.get(i) for i in range(256)
)
PRECISION_BY_CODE: tuple[Precision | None, ...] = tuple(
    {int(p): p for p in Precision}.get(i) for i in range(256)
)
