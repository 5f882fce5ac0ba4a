"""The Compute LSA: a provider's hardware, availability and prices as a signed link-state PDU.

The wire format (every byte is documented in ``docs/tlv.md``) follows IS-IS: a fixed
32-byte header, then TLVs; the node and each device group are TLVs made of sub-TLVs.

    header  lifetime u16 | type u8 | version u8 | originator 20 | sequence u32 | checksum u16 | length u16
    TLVs    type u8 | length u16 | value        (sub-TLVs: type u8 | length u8 | value)

The codec is table-driven, as FRR isisd's: ``tables`` has one row per TLV and sub-TLV
type (code, name, length rule, decode and encode functions), ``ops`` the row type and the
walkers over a table. The modules:

    wire     sizes, offsets, struct formats, the Tlv / NodeSub / DeviceSub / RuntimeSub codes
    values   LsaHeader, Availability, LsaContent, ComputeLsa
    header   decode_header, with_lifetime, purge, newer, checksum_of
    ops      TlvOps, OpsTable, the sub-TLV walkers
    tables   NODE_OPS, DEVICE_OPS, RUNTIME_OPS, LSA_OPS and their value codecs
    decode   decode_lsa and the descriptor cache
    encode   encode_lsa, seal
    sign     signing_hash, address_of, recover_originator

This package's namespace is the public API; callers import from it, not from the modules.

Invariants:
- the checksum is the ISO 10589 Fletcher checksum over every byte but the remaining
  lifetime (bytes 2..length), so ageing an LSA never changes it;
- the signature TLV is the last TLV; it holds 65 bytes r, s, v (v = 27 + recovery id,
  s in the lower half of the curve order) signed by the originator's secp256k1 key over
  keccak256 of the LSA up to the signature TLV with lifetime and checksum zeroed; the
  originator id is that key's Ethereum address, so an LSA is bound to a registered provider;
- ``decode_lsa`` either returns a fully validated ``ComputeLsa`` or raises a subclass of
  ``LsaDecodeError`` carrying the offset at fault; never a partial object, never another
  exception. It does not check the signature (``recover_originator`` does, and costs ~50 us);
- a decoded LSA re-encodes to the same bytes: repeated entries must be in canonical order
  and unknown top-level TLVs are kept (and re-flooded, since flooding sends ``raw``);
  unknown sub-TLVs inside a known TLV are skipped on decode and kept in ``raw``;
- no LSA is longer than ``MAX_LSA_SIZE`` (1492 bytes, IS-IS's originatingLSPBufferSize).
"""

from marketplace.convergence.lsa.decode import (
    DESCRIPTOR_CACHE_SIZE,
    cached_descriptors,
    clear_descriptor_cache,
    decode_lsa,
)
from marketplace.convergence.lsa.encode import encode_body, encode_lsa, seal
from marketplace.convergence.lsa.header import checksum_of, decode_header, newer, purge, with_lifetime
from marketplace.convergence.lsa.sign import address_of, address_of_public, recover_originator, signing_hash
from marketplace.convergence.lsa.tables import DEVICE_OPS, LSA_OPS, NODE_OPS, RUNTIME_OPS
from marketplace.convergence.lsa.values import Availability, ComputeLsa, LsaContent, LsaHeader
from marketplace.convergence.lsa.wire import (
    CHECKSUM_REGION_START,
    COMPUTE_LSA,
    HEADER_SIZE,
    MAX_LIFETIME,
    MAX_LSA_SIZE,
    MAX_SEQUENCE,
    OFF_CHECKSUM,
    OFF_LENGTH,
    OFF_LIFETIME,
    OFF_ORIGINATOR,
    OFF_SEQUENCE,
    OFF_TYPE,
    OFF_VERSION,
    SIG_TLV_SIZE,
    SIGNATURE_SIZE,
    TLV_HEADER,
    VERSION,
    DeviceSub,
    NodeSub,
    RuntimeSub,
    Tlv,
)

__all__ = [
    "CHECKSUM_REGION_START",
    "COMPUTE_LSA",
    "DESCRIPTOR_CACHE_SIZE",
    "DEVICE_OPS",
    "HEADER_SIZE",
    "LSA_OPS",
    "MAX_LIFETIME",
    "MAX_LSA_SIZE",
    "MAX_SEQUENCE",
    "NODE_OPS",
    "RUNTIME_OPS",
    "OFF_CHECKSUM",
    "OFF_LENGTH",
    "OFF_LIFETIME",
    "OFF_ORIGINATOR",
    "OFF_SEQUENCE",
    "OFF_TYPE",
    "OFF_VERSION",
    "SIGNATURE_SIZE",
    "SIG_TLV_SIZE",
    "TLV_HEADER",
    "VERSION",
    "Availability",
    "ComputeLsa",
    "DeviceSub",
    "LsaContent",
    "LsaHeader",
    "NodeSub",
    "RuntimeSub",
    "Tlv",
    "address_of",
    "address_of_public",
    "cached_descriptors",
    "checksum_of",
    "clear_descriptor_cache",
    "decode_header",
    "decode_lsa",
    "encode_body",
    "encode_lsa",
    "newer",
    "purge",
    "recover_originator",
    "seal",
    "signing_hash",
    "with_lifetime",
]
