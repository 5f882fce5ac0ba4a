// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ITierGate} from "./interfaces/ITierGate.sol";

// The tier gate and its bLSAG verifier. Proof bytes, hashes and the order of every check
// are specified in docs/zk.md and mirrored by the Python verifier in zk/ (tests run the same
// vectors through both). One file holds the verifier interface, the verifier and the gate.

// ---------------------------------------------------------------------- errors (shared)

/// The proof is truncated or padded: `expected` is the length required so far (5 for the
/// envelope, 7 for the bLSAG header, then exactly 103 + 96n).
error BadProofLength(uint256 expected, uint256 actual);
/// No verifier is registered for the proof's scheme byte.
error UnknownScheme(uint8 scheme);
/// The ring holds 0 keys or more than MAX_RING.
error RingSizeOutOfRange(uint256 size);
/// A coordinate at byte `offset` of the proof is not below the field modulus p.
error CoordinateNotInField(uint256 offset);
/// The point at byte `offset` is (0, 0), the point at infinity.
error PointAtInfinity(uint256 offset);
/// The point at byte `offset` is not on y^2 = x^3 + 3.
error PointNotOnCurve(uint256 offset);
/// The scalar at byte `offset` is not below the group order N.
error ScalarNotInGroup(uint256 offset);
/// The ring does not close: the proof was made for another order, buyer, market, gate,
/// chain, epoch, tier, slot or ring.
error InvalidRingSignature();

/// @title IMembershipVerifier: one proof system behind the tier gate.
/// @notice The gate owns the state (group commitments per tier and epoch, spent nullifiers,
/// roles); a verifier is stateless maths. Given the statement the gate fills in and the proof
/// bytes (the gate's 5-byte envelope included), it returns the group commitment the proof
/// was made against (for bLSAG the keccak-256 of its ring; for a Merkle + Groth16 backend the
/// tree root) and the nullifier, or reverts with a named error. Adding a backend = deploying
/// another verifier and registering it for a new scheme byte.
interface IMembershipVerifier {
    struct Statement {
        uint256 chainId;
        address gate;
        address market;
        uint64 epoch;
        uint8 tier;
        uint32 slot;
        bytes32 orderDigest;
        address beneficiary;
    }

    function scheme() external view returns (uint8);

    function verify(Statement calldata st, bytes calldata proof)
        external
        view
        returns (bytes32 groupCommitment, bytes32 nullifier);
}

/// @title BlsagVerifier: a linkable ring signature over alt_bn128 G1, with precompiles 5, 6, 7.
/// @notice Layout (big-endian): scheme(1)=0x01 | slot(4) | n(2) | ring(64n) | I(64) | c0(32) | s(32n).
///   H      = hashToCurve(abi.encode(KEY_IMAGE_BASE_TAG, chainId, gate, epoch, tier, slot))
///   prefix = keccak256(abi.encode(CHALLENGE_TAG, chainId, gate, market, epoch, tier, slot,
///                                 orderDigest, beneficiary, keccak256(ring), I.x, I.y))
///   L_i = s_i*G + c_i*P_i;  R_i = s_i*H + c_i*I;  c_{i+1} = keccak256(prefix, L_i, R_i) mod N
///   valid iff c_n == c_0; nullifier = keccak256(I.x, I.y); commitment = keccak256(ring).
contract BlsagVerifier is IMembershipVerifier {
    uint256 internal constant P = 21888242871839275222246405745257275088696311157297823662689037894645226208583;
    uint256 internal constant N = 21888242871839275222246405745257275088548364400416034343698204186575808495617;
    uint256 internal constant SQRT_EXP = 5472060717959818805561601436314318772174077789324455915672259473661306552146; // (P + 1) / 4
    uint256 internal constant ENVELOPE = 5;
    uint256 internal constant RING_START = 7;
    uint256 public constant MAX_RING = 64;
    uint8 public constant SCHEME = 1;
    bytes32 public constant KEY_IMAGE_BASE_TAG = keccak256("CONA/tier-gate/bLSAG/key-image-base/v1");
    bytes32 public constant CHALLENGE_TAG = keccak256("CONA/tier-gate/bLSAG/challenge/v1");

    /// A precompile call failed; unreachable for inputs that passed the format checks.
    error PrecompileFailed(uint256 precompile);
    /// 256 counters gave no curve point (probability 2^-256).
    error HashToCurveFailed();

    /// @dev The verifier loop's state, in memory so the loop stays within the stack's reach.
    struct Ring {
        uint256 hx; // H(scope)
        uint256 hy;
        uint256 ix; // the key image
        uint256 iy;
        bytes32 prefix;
        uint256 c; // the running challenge
        uint256 sAt; // where the responses start in the proof
        uint256 lx; // L_i and R_i of the current step
        uint256 ly;
        uint256 rx;
        uint256 ry;
    }

    function scheme() external pure returns (uint8) {
        return SCHEME;
    }

    function verify(Statement calldata st, bytes calldata proof)
        external
        view
        returns (bytes32 groupCommitment, bytes32 nullifier)
    {
        uint256 n = _checkFormat(proof);
        uint256 imageAt = RING_START + 64 * n;
        groupCommitment = keccak256(proof[RING_START:imageAt]);
        // slither-disable-next-line uninitialized-local every field is set below before it is read
        Ring memory r;
        r.ix = _word(proof, imageAt);
        r.iy = _word(proof, imageAt + 32);
        (r.hx, r.hy) = keyImageBase(st.chainId, st.gate, st.epoch, st.tier, st.slot);
        r.prefix = _prefix(st, groupCommitment, r.ix, r.iy);
        uint256 c0 = _word(proof, imageAt + 64);
        r.c = c0;
        r.sAt = imageAt + 96;
        for (uint256 i = 0; i < n; i++) {
            _step(r, proof, i);
        }
        if (r.c != c0) revert InvalidRingSignature();
        nullifier = keccak256(abi.encode(r.ix, r.iy));
    }

    /// @dev One ring member: L = s*G + c*P_i, R = s*H + c*I, then the next challenge.
    function _step(Ring memory r, bytes calldata proof, uint256 i) internal view {
        uint256 s = _word(proof, r.sAt + 32 * i);
        uint256 at = RING_START + 64 * i;
        (r.lx, r.ly) = _mulAdd(1, 2, s, _word(proof, at), _word(proof, at + 32), r.c);
        (r.rx, r.ry) = _mulAdd(r.hx, r.hy, s, r.ix, r.iy, r.c);
        r.c = _challenge(r.prefix, r.lx, r.ly, r.rx, r.ry);
    }

    /// @notice H(scope): the base of the key image, by try-and-increment (docs/zk.md).
    function keyImageBase(uint256 chainId, address gate, uint64 epoch, uint8 tier, uint32 slot)
        public
        view
        returns (uint256 x, uint256 y)
    {
        for (uint256 ctr = 0; ctr < 256; ctr++) {
            x = uint256(keccak256(abi.encode(KEY_IMAGE_BASE_TAG, chainId, gate, epoch, tier, slot, ctr))) % P;
            uint256 y2 = addmod(mulmod(mulmod(x, x, P), x, P), 3, P);
            y = _sqrtExp(y2);
            if (mulmod(y, y, P) == y2) return (x, y);
        }
        revert HashToCurveFailed();
    }

    /// @dev Every format check, in the documented order; returns the ring size.
    function _checkFormat(bytes calldata proof) internal pure returns (uint256 n) {
        uint256 len = proof.length;
        if (len < ENVELOPE) revert BadProofLength(ENVELOPE, len);
        if (uint8(proof[0]) != SCHEME) revert UnknownScheme(uint8(proof[0]));
        if (len < RING_START) revert BadProofLength(RING_START, len);
        n = uint16(bytes2(proof[5:7]));
        if (n == 0 || n > MAX_RING) revert RingSizeOutOfRange(n);
        uint256 expected = RING_START + 96 * n + 96;
        if (len != expected) revert BadProofLength(expected, len);
        uint256 off = RING_START;
        for (uint256 i = 0; i <= n; i++) {
            _checkPoint(proof, off); // n ring keys, then the key image
            off += 64;
        }
        for (uint256 i = 0; i <= n; i++) {
            if (_word(proof, off) >= N) revert ScalarNotInGroup(off); // c0, then s_0 .. s_{n-1}
            off += 32;
        }
    }

    function _checkPoint(bytes calldata proof, uint256 off) internal pure {
        uint256 x = _word(proof, off);
        uint256 y = _word(proof, off + 32);
        if (x >= P) revert CoordinateNotInField(off);
        if (y >= P) revert CoordinateNotInField(off + 32);
        if (x == 0 && y == 0) revert PointAtInfinity(off);
        if (mulmod(y, y, P) != addmod(mulmod(mulmod(x, x, P), x, P), 3, P)) revert PointNotOnCurve(off);
    }

    function _prefix(Statement calldata st, bytes32 commitment, uint256 ix, uint256 iy)
        internal
        pure
        returns (bytes32)
    {
        // two steps keep the encoder's stack use small; the bytes equal one abi.encode of all twelve
        bytes memory head =
            abi.encode(CHALLENGE_TAG, st.chainId, st.gate, st.market, st.epoch, st.tier, st.slot, st.orderDigest);
        return keccak256(bytes.concat(head, abi.encode(st.beneficiary, commitment, ix, iy)));
    }

    function _word(bytes calldata data, uint256 off) internal pure returns (uint256 v) {
        assembly {
            v := calldataload(add(data.offset, off))
        }
    }

    /// @dev s*(ax, ay) + c*(bx, by) with precompiles 7, 7, 6, in scratch memory past the free pointer.
    function _mulAdd(uint256 ax, uint256 ay, uint256 s, uint256 bx, uint256 by, uint256 c)
        internal
        view
        returns (uint256 x, uint256 y)
    {
        bool ok;
        assembly {
            let m := mload(0x40)
            mstore(m, ax)
            mstore(add(m, 0x20), ay)
            mstore(add(m, 0x40), s)
            ok := staticcall(gas(), 0x07, m, 0x60, m, 0x40)
            mstore(add(m, 0x40), bx)
            mstore(add(m, 0x60), by)
            mstore(add(m, 0x80), c)
            ok := and(ok, staticcall(gas(), 0x07, add(m, 0x40), 0x60, add(m, 0x40), 0x40))
            ok := and(ok, staticcall(gas(), 0x06, m, 0x80, m, 0x40))
            x := mload(m)
            y := mload(add(m, 0x20))
        }
        if (!ok) revert PrecompileFailed(7);
    }

    function _challenge(bytes32 prefix, uint256 lx, uint256 ly, uint256 rx, uint256 ry)
        internal
        pure
        returns (uint256 c)
    {
        assembly {
            let m := mload(0x40)
            mstore(m, prefix)
            mstore(add(m, 0x20), lx)
            mstore(add(m, 0x40), ly)
            mstore(add(m, 0x60), rx)
            mstore(add(m, 0x80), ry)
            c := mod(keccak256(m, 0xa0), N)
        }
    }

    /// @dev y2^((p+1)/4) mod p by the modexp precompile (0x05).
    function _sqrtExp(uint256 y2) internal view returns (uint256 y) {
        bool ok;
        assembly {
            let m := mload(0x40)
            mstore(m, 0x20)
            mstore(add(m, 0x20), 0x20)
            mstore(add(m, 0x40), 0x20)
            mstore(add(m, 0x60), y2)
            mstore(add(m, 0x80), SQRT_EXP)
            mstore(add(m, 0xa0), P)
            ok := staticcall(gas(), 0x05, m, 0xc0, m, 0x20)
            y := mload(m)
        }
        if (!ok) revert PrecompileFailed(5);
    }
}

/// @title TierGate: tier groups per epoch, proof checks, and the spent-nullifier set.
/// @notice The operator commits, per (tier, epoch), the bucket commitments of the tier group
/// and how many uses (`slots`) a member has per epoch, and starts epochs. The bound market
/// calls `consume` when an order claims a tier: the proof must verify for this chain, this
/// gate, the calling market, the order digest and buyer, the current epoch and the tier, be
/// made over a committed bucket, and carry a nullifier never spent before. Roles:
/// DEFAULT_ADMIN_ROLE (the deployment's timelock) registers verifiers, so swapping the proof
/// system reaches buyers only after the timelock's delay; OPERATOR_ROLE (the operator's key)
/// commits groups and starts epochs; the deployer binds the market, once.
contract TierGate is ITierGate, AccessControl {
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    uint256 public constant MAX_BUCKETS = 256;
    uint256 internal constant ENVELOPE = 5;

    struct Group {
        uint32 version; // 0: never committed; each commit bumps it and retires the previous buckets
        uint32 slots;
        uint32 buckets;
    }

    address public market;
    uint64 public override currentEpoch;
    mapping(uint8 => IMembershipVerifier) public verifiers;
    mapping(bytes32 => bool) public spent;
    mapping(uint8 => mapping(uint64 => Group)) private _groups;
    mapping(bytes32 => bool) private _committed;

    error NotMarket(address caller);
    error MarketAlreadyBound(address market);
    error ZeroAddress();
    error NotBinder(address caller);
    error WrongEpoch(uint64 epoch, uint64 current);
    error EpochNotAfter(uint64 epoch, uint64 current);
    error EpochPassed(uint64 epoch, uint64 current);
    error NoTier();
    error NoSlots();
    error BucketCount(uint256 count, uint256 maximum);
    error NoGroup(uint8 tier, uint64 epoch);
    error SlotOutOfRange(uint32 slot, uint32 slots);
    error RingNotCommitted(uint8 tier, uint64 epoch, bytes32 commitment);
    error NullifierAlreadySpent(bytes32 nullifier);
    error SchemeMismatch(uint8 scheme, uint8 verifierScheme);

    event MarketBound(address indexed market);
    event VerifierSet(uint8 indexed scheme, address verifier);
    event EpochStarted(uint64 indexed epoch, uint64 previous);
    event GroupCommitted(
        uint8 indexed tier, uint64 indexed epoch, uint32 version, uint32 slots, bytes32[] commitments
    );
    event NullifierSpent(
        bytes32 indexed nullifier, uint8 indexed tier, uint64 indexed epoch, bytes32 orderDigest, bytes32 commitment
    );

    /// @notice The deployer: the one account that may bind the market, once.
    address public immutable binder;

    /// @param admin registers verifiers and grants roles: a timelock on any real network
    /// @param operator commits tier groups and starts epochs
    /// @param blsag the verifier of scheme 1
    constructor(address admin, address operator, IMembershipVerifier blsag) {
        if (admin == address(0) || operator == address(0) || address(blsag) == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
        binder = msg.sender;
        _setVerifier(1, blsag);
        currentEpoch = 1;
        emit EpochStarted(1, 0);
    }

    // ------------------------------------------------------------------ admin and operator

    /// @notice Binds the market whose orders may consume proofs (once, by the deployer).
    /// @param market_ the market
    /// @dev Emits `MarketBound`.
    function bindMarket(address market_) external {
        if (msg.sender != binder) revert NotBinder(msg.sender);
        if (market_ == address(0)) revert ZeroAddress();
        if (market != address(0)) revert MarketAlreadyBound(market);
        market = market_;
        emit MarketBound(market_);
    }

    /// @notice Registers the verifier of a proof scheme (through the timelock).
    /// @param scheme the scheme id the verifier reports
    /// @param verifier the verifier
    /// @dev Emits `VerifierSet`.
    function setVerifier(uint8 scheme, IMembershipVerifier verifier) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setVerifier(scheme, verifier);
    }

    function _setVerifier(uint8 scheme, IMembershipVerifier verifier) private {
        uint8 actual = verifier.scheme();
        if (actual != scheme) revert SchemeMismatch(scheme, actual);
        verifiers[scheme] = verifier;
        emit VerifierSet(scheme, address(verifier));
    }

    function startEpoch(uint64 epoch) external onlyRole(OPERATOR_ROLE) {
        uint64 previous = currentEpoch;
        if (epoch <= previous) revert EpochNotAfter(epoch, previous);
        currentEpoch = epoch;
        emit EpochStarted(epoch, previous);
    }

    /// @notice Commits tier `tier`'s group for `epoch` (current or future): its bucket
    /// commitments and the uses per member. Replaces any earlier commit for the same pair.
    function commitGroup(uint8 tier, uint64 epoch, uint32 slots, bytes32[] calldata commitments)
        external
        onlyRole(OPERATOR_ROLE)
    {
        if (tier == 0) revert NoTier();
        if (epoch < currentEpoch) revert EpochPassed(epoch, currentEpoch);
        if (slots == 0) revert NoSlots();
        if (commitments.length == 0 || commitments.length > MAX_BUCKETS) {
            revert BucketCount(commitments.length, MAX_BUCKETS);
        }
        Group storage g = _groups[tier][epoch];
        uint32 version = g.version + 1;
        g.version = version;
        g.slots = slots;
        g.buckets = uint32(commitments.length);
        for (uint256 i = 0; i < commitments.length; i++) {
            _committed[_groupKey(tier, epoch, version, commitments[i])] = true;
        }
        emit GroupCommitted(tier, epoch, version, slots, commitments);
    }

    // ------------------------------------------------------------------ the market's call

    function consume(uint8 tier, uint64 epoch, bytes32 orderDigest, address beneficiary, bytes calldata proof)
        external
        returns (bytes32 nullifier)
    {
        if (msg.sender != market) revert NotMarket(msg.sender);
        bytes32 commitment;
        (commitment, nullifier) = _check(tier, epoch, orderDigest, beneficiary, msg.sender, proof);
        if (spent[nullifier]) revert NullifierAlreadySpent(nullifier);
        spent[nullifier] = true;
        emit NullifierSpent(nullifier, tier, epoch, orderDigest, commitment);
    }

    // ------------------------------------------------------------------ views

    /// @notice Everything `consume` checks except the caller and the spent set, for `market_`
    /// (clients and tests check a proof before they send it).
    function check(
        uint8 tier,
        uint64 epoch,
        bytes32 orderDigest,
        address beneficiary,
        address market_,
        bytes calldata proof
    ) external view returns (bytes32 commitment, bytes32 nullifier) {
        return _check(tier, epoch, orderDigest, beneficiary, market_, proof);
    }

    function group(uint8 tier, uint64 epoch) external view returns (uint32 version, uint32 slots, uint32 buckets) {
        Group memory g = _groups[tier][epoch];
        return (g.version, g.slots, g.buckets);
    }

    function isCommitted(uint8 tier, uint64 epoch, bytes32 commitment) external view returns (bool) {
        return _committed[_groupKey(tier, epoch, _groups[tier][epoch].version, commitment)];
    }

    // ------------------------------------------------------------------ internals

    function _check(
        uint8 tier,
        uint64 epoch,
        bytes32 orderDigest,
        address beneficiary,
        address market_,
        bytes calldata proof
    ) private view returns (bytes32, bytes32) {
        IMembershipVerifier.Statement memory st = IMembershipVerifier.Statement({
            chainId: block.chainid,
            gate: address(this),
            market: market_,
            epoch: epoch,
            tier: tier,
            slot: 0, // read from the proof's envelope below
            orderDigest: orderDigest,
            beneficiary: beneficiary
        });
        return _checkStatement(st, proof);
    }

    /// @dev The gate's checks in order: epoch, envelope length, scheme, group, slot, then the
    /// verifier (format, ring equation), then the commitment of the proof's ring.
    function _checkStatement(IMembershipVerifier.Statement memory st, bytes calldata proof)
        private
        view
        returns (bytes32 commitment, bytes32 nullifier)
    {
        if (st.epoch != currentEpoch) revert WrongEpoch(st.epoch, currentEpoch);
        if (proof.length < ENVELOPE) revert BadProofLength(ENVELOPE, proof.length);
        IMembershipVerifier verifier = verifiers[uint8(proof[0])];
        if (address(verifier) == address(0)) revert UnknownScheme(uint8(proof[0]));
        Group memory g = _groups[st.tier][st.epoch];
        if (g.version == 0) revert NoGroup(st.tier, st.epoch);
        st.slot = uint32(bytes4(proof[1:5]));
        if (st.slot >= g.slots) revert SlotOutOfRange(st.slot, g.slots);
        (commitment, nullifier) = verifier.verify(st, proof);
        if (!_committed[_groupKey(st.tier, st.epoch, g.version, commitment)]) {
            revert RingNotCommitted(st.tier, st.epoch, commitment);
        }
    }

    function _groupKey(uint8 tier, uint64 epoch, uint32 version, bytes32 commitment) private pure returns (bytes32) {
        return keccak256(abi.encode(tier, epoch, version, commitment));
    }
}
