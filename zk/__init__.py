"""CONA's zero-knowledge tier proofs: anonymous, unlinkable, single-use proofs of tier membership.

A buyer proves "I hold a credential in tier group T for epoch E" for one order without
revealing which credential, with a linkable ring signature (bLSAG) over alt_bn128 G1 that
the EVM verifies with its precompiles (contracts/TierGate.sol). See docs/zk.md.

    curve           G1 arithmetic (Jacobian, wNAF, GLV), checked against py_ecc
    hash_to_curve   try-and-increment, as the Solidity side does it
    keys            credentials: SecretKey, PublicKey
    groups          TierGroup: sorted keys per (tier, epoch), buckets, commitments
    blsag           prove / verify, Scope, Statement
    encoding        the proof's bytes, strict decoding
    tier            prove_tier / check_tier_proof / nullifier_for: what a CLI or API calls
    errors          ProofError subclasses, named like the contract's custom errors

Pure: no chain, network or process imports (an import-linter contract holds it).
"""

from zk.blsag import Scope, Statement, Verified, key_image, prove, verify, verify_bytes
from zk.encoding import BlsagProof, decode_proof, encode_proof, nullifier_of, proof_length, ring_commitment
from zk.groups import TierGroup
from zk.keys import PublicKey, SecretKey, derive_key, generate_key
from zk.tier import check_tier_proof, nullifier_for, prove_tier

__all__ = [
    "BlsagProof", "PublicKey", "Scope", "SecretKey", "Statement", "TierGroup", "Verified", "check_tier_proof",
    "decode_proof", "derive_key", "encode_proof", "generate_key", "key_image", "nullifier_for", "nullifier_of",
    "proof_length", "prove", "prove_tier", "ring_commitment", "verify", "verify_bytes",
]
