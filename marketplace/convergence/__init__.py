"""The convergence layer: Compute LSAs (signed, TLV-encoded) and the link-state database.

``lsa`` is the wire codec, ``lsdb`` the IS-IS/OSPF install and ageing rules, ``checksum``
the ISO 10589 Fletcher checksum. Everything here is pure: the clock is injected.
"""

from marketplace.convergence.lsa import (
    COMPUTE_LSA,
    MAX_LSA_SIZE,
    MAX_SEQUENCE,
    Availability,
    ComputeLsa,
    LsaContent,
    LsaHeader,
    address_of,
    decode_header,
    decode_lsa,
    encode_lsa,
    newer,
    purge,
    recover_originator,
    with_lifetime,
)
from marketplace.convergence.lsdb import InstallResult, Lsdb, Originator, Outcome

__all__ = [
    "COMPUTE_LSA",
    "MAX_LSA_SIZE",
    "MAX_SEQUENCE",
    "Availability",
    "ComputeLsa",
    "InstallResult",
    "LsaContent",
    "LsaHeader",
    "Lsdb",
    "Originator",
    "Outcome",
    "address_of",
    "decode_header",
    "decode_lsa",
    "encode_lsa",
    "newer",
    "purge",
    "recover_originator",
    "with_lifetime",
]
