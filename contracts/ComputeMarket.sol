// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {AssetHolder} from "./lib/AssetHolder.sol";
import {ProviderRegistry} from "./ProviderRegistry.sol";
import {ITierGate} from "./interfaces/ITierGate.sol";

/// @title ComputeMarket: orders with escrow, the lease lifecycle, settlement and its audit trail.
/// @notice Buyers deposit once, then place orders by their own transaction or by an EIP-712 signed
/// intent that the orchestrator submits (so the engine can batch, but never spend a buyer's money
/// without the buyer's signature). Every transition is one function and emits exactly one event per order it moves
/// (`assignBatch` also one `BatchCommitted` for the round):
///
///   Open --assign | assignBatch--> Assigned --accept--> Running --complete--> Completed --settle--> Settled
///   Open|Assigned --cancel (buyer)--> Cancelled
///   Assigned --timeoutAcceptance--> Assigned (next backup) | Refunded        (late provider slashed)
///   Running --fail (orchestrator)--> Assigned (backup, remaining time) | Refunded (pro-rata pay, slash)
///   Completed --dispute (buyer, in window)--> Disputed --resolve (arbiter)--> Resolved
///
/// A matching round of the engine is bound by ONE transition, `assignBatch`: it records the
/// batch (hashes of the round's inputs and decisions, `BatchCommitted`) and assigns every order
/// the round decided, all or nothing, each `Assigned` naming the batch that decided it. So a
/// batch never lands without its assignments nor the reverse, and an order's assignment points
/// at its batch on chain. A manual `assign` names batch 0.
///
/// Payments are pulled (`withdraw`). Escrow is conserved:
///     held asset == totalFree + totalEscrow
/// where totalFree is the sum of every account's withdrawable balance and totalEscrow the sum
/// of the escrow still reserved by live orders.
contract ComputeMarket is AccessControl, Pausable, ReentrancyGuard, EIP712, AssetHolder {
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 public constant ORCHESTRATOR_ROLE = keccak256("ORCHESTRATOR_ROLE");
    bytes32 public constant ARBITER_ROLE = keccak256("ARBITER_ROLE");

    bytes32 public constant ORDER_INTENT_TYPEHASH = keccak256(
        "OrderIntent(address buyer,bytes32 requirement,uint8 deviceClass,uint32 units,uint64 duration,"
        "uint256 maxPrice,uint8 tier,uint256 nonce,uint64 deadline)"
    );

    uint256 public constant MAX_FEE_BPS = 1_000;
    uint256 public constant MAX_SLASH_BPS = 5_000;
    uint256 public constant MAX_BACKUPS = 8;

    enum State { None, Open, Assigned, Running, Completed, Settled, Cancelled, Refunded, Disputed, Resolved }

    /// @notice What a buyer signs (or sends itself). `duration` in seconds; `maxPrice` per unit-hour.
    struct OrderIntent {
        address buyer;
        bytes32 requirement;
        uint8 deviceClass;
        uint32 units;
        uint64 duration;
        uint256 maxPrice;
        uint8 tier;
        uint256 nonce;
        uint64 deadline;
    }

    struct Order {
        address buyer;
        uint8 deviceClass;
        uint8 tier;
        State state;
        uint32 units;
        uint16 nextBackup;
        address provider;
        uint64 duration;
        uint64 served; // seconds already paid for (segments before a failover)
        uint64 acceptDeadline;
        uint64 startedAt;
        uint64 completedAt;
        uint256 maxPrice;
        uint256 price;
        uint256 escrow;
        uint256 usage; // unit-seconds metered in the last segment
        bytes32 requirement;
        bytes32 digest;
        bytes32 result;
        address[] backups;
    }

    struct Failure {
        address failed;
        address next;
        uint64 served;
        uint256 paid;
        uint256 fee;
        uint256 slashed;
        uint256 refund;
    }

    /// @dev `blockNumber != 0` marks a recorded batch; `orders` is how many it assigned.
    struct Batch {
        bytes32 inputsHash;
        bytes32 decisionsHash;
        uint64 blockNumber;
        uint64 orders;
    }

    error NoSuchOrder(uint256 order);
    error WrongState(uint256 order, State actual, State expected);
    error NotOrderOwner(uint256 order, address caller);
    error NotAssignedProvider(uint256 order, address caller);
    error InvalidOrder(bytes32 reason);
    error IntentExpired(uint64 deadline);
    error BadNonce(address buyer, uint256 expected, uint256 got);
    error BadSignature(address buyer, address signer);
    error NotBuyer(address buyer, address caller);
    error InsufficientDeposit(address buyer, uint256 needed, uint256 available);
    error ProviderNotEligible(address provider);
    error PriceAboveCeiling(uint256 order, uint256 price, uint256 ceiling);
    error TooManyBackups(uint256 count);
    error AcceptanceExpired(uint256 order, uint64 deadline);
    error AcceptanceNotExpired(uint256 order, uint64 deadline);
    error UsageTooHigh(uint256 order, uint256 usage, uint256 maximum);
    error DisputeWindowOpen(uint256 order, uint64 until);
    error DisputeWindowClosed(uint256 order, uint64 closedAt);
    error SplitTooLarge(uint256 order, uint256 amount, uint256 maximum);
    error TiersDisabled();
    error InsufficientBalance(address account, uint256 requested, uint256 available);
    error LengthMismatch();
    error BatchExists(bytes32 batchId);
    error ZeroBatchId();
    error UnknownSetting(bytes32 name);
    error SettingOutOfBounds(bytes32 name, uint256 value, uint256 min, uint256 max);
    error UnexpectedEther(address from);

    event Deposited(address indexed account, uint256 amount, uint256 balance);
    event Withdrawn(address indexed account, uint256 amount, uint256 balance);
    event OrderPlaced(uint256 indexed order, address indexed buyer, bytes32 digest, bytes32 requirement,
        uint8 deviceClass, uint32 units, uint64 duration, uint256 maxPrice, uint8 tier, uint256 escrow);
    /// @notice `batchId` is the matching batch that decided the assignment (0 for a manual `assign`).
    event Assigned(uint256 indexed order, address indexed provider, bytes32 indexed batchId, uint256 price,
        address[] backups, uint64 acceptDeadline);
    event Accepted(uint256 indexed order, address indexed provider, uint64 startedAt);
    event Completed(uint256 indexed order, address indexed provider, bytes32 result, uint256 usage);
    event Settled(uint256 indexed order, address indexed provider, uint256 paid, uint256 fee, uint256 refund);
    event Cancelled(uint256 indexed order, address indexed buyer, uint256 refund);
    event AcceptanceTimedOut(uint256 indexed order, address indexed late, address indexed next, uint256 slashed,
        uint256 refund, uint64 acceptDeadline);
    event OrderFailed(uint256 indexed order, address indexed provider, address indexed next, uint64 served,
        uint256 paid, uint256 fee, uint256 slashed, uint256 refund, uint64 acceptDeadline);
    event Disputed(uint256 indexed order, address indexed buyer);
    event Resolved(uint256 indexed order, address indexed provider, uint256 paid, uint256 fee, uint256 refund,
        uint256 slashed);
    event BatchCommitted(bytes32 indexed batchId, bytes32 inputsHash, bytes32 decisionsHash, uint256 orders);
    event SettingChanged(bytes32 indexed name, uint256 oldValue, uint256 newValue);

    ProviderRegistry public immutable registry;
    ITierGate public immutable tierGate;
    address public immutable feeRecipient;

    uint256 public feeBps;
    uint256 public acceptWindow;
    uint256 public disputeWindow;
    uint256 public missSlashBps;
    uint256 public failSlashBps;

    uint256 public orderCount;
    uint256 public totalFree;
    uint256 public totalEscrow;

    mapping(uint256 => Order) private _orders;
    mapping(address => uint256) public balances;
    mapping(address => uint256) public nonces;
    mapping(bytes32 => Batch) public batches;

    constructor(
        address asset_,
        ProviderRegistry registry_,
        ITierGate tierGate_,
        address operator,
        address orchestrator,
        address arbiter,
        uint256[5] memory settings // feeBps, acceptWindow, disputeWindow, missSlashBps, failSlashBps
    ) EIP712("CONA ComputeMarket", "1") AssetHolder(asset_) {
        registry = registry_;
        tierGate = tierGate_;
        feeRecipient = operator;
        _grantRole(DEFAULT_ADMIN_ROLE, operator);
        _grantRole(OPERATOR_ROLE, operator);
        _grantRole(ORCHESTRATOR_ROLE, orchestrator);
        _grantRole(ARBITER_ROLE, arbiter);
        _set("feeBps", settings[0]);
        _set("acceptWindow", settings[1]);
        _set("disputeWindow", settings[2]);
        _set("missSlashBps", settings[3]);
        _set("failSlashBps", settings[4]);
    }

    /// @dev Only the registry sends ETH outside `deposit`: the proceeds of a slash.
    receive() external payable {
        if (msg.sender != address(registry) || asset != address(0)) revert UnexpectedEther(msg.sender);
    }

    // ------------------------------------------------------------------ operator

    function setSetting(bytes32 name, uint256 value) external onlyRole(OPERATOR_ROLE) {
        _set(name, value);
    }

    function _set(bytes32 name, uint256 value) private {
        uint256 old;
        if (name == "feeBps") {
            _bound(name, value, 0, MAX_FEE_BPS);
            (old, feeBps) = (feeBps, value);
        } else if (name == "acceptWindow") {
            _bound(name, value, 5, 1 days);
            (old, acceptWindow) = (acceptWindow, value);
        } else if (name == "disputeWindow") {
            _bound(name, value, 0, 30 days);
            (old, disputeWindow) = (disputeWindow, value);
        } else if (name == "missSlashBps") {
            _bound(name, value, 0, MAX_SLASH_BPS);
            (old, missSlashBps) = (missSlashBps, value);
        } else if (name == "failSlashBps") {
            _bound(name, value, 0, MAX_SLASH_BPS);
            (old, failSlashBps) = (failSlashBps, value);
        } else {
            revert UnknownSetting(name);
        }
        emit SettingChanged(name, old, value);
    }

    function _bound(bytes32 name, uint256 value, uint256 lo, uint256 hi) private pure {
        if (value < lo || value > hi) revert SettingOutOfBounds(name, value, lo, hi);
    }

    function pause() external onlyRole(OPERATOR_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(OPERATOR_ROLE) {
        _unpause();
    }

    // ------------------------------------------------------------------ money in and out

    function deposit(uint256 amount) external payable nonReentrant {
        _pullIn(msg.sender, amount);
        balances[msg.sender] += amount;
        totalFree += amount;
        emit Deposited(msg.sender, amount, balances[msg.sender]);
    }

    function withdraw(uint256 amount) external nonReentrant {
        uint256 available = balances[msg.sender];
        if (amount == 0) revert ZeroAmount();
        if (amount > available) revert InsufficientBalance(msg.sender, amount, available);
        balances[msg.sender] = available - amount;
        totalFree -= amount;
        emit Withdrawn(msg.sender, amount, available - amount);
        _payOut(msg.sender, amount);
    }

    // ------------------------------------------------------------------ placing orders

    /// @notice The EIP-712 digest of an intent: what the buyer signs and what a tier proof binds to.
    function intentDigest(OrderIntent calldata it) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(
            ORDER_INTENT_TYPEHASH, it.buyer, it.requirement, it.deviceClass, it.units, it.duration, it.maxPrice,
            it.tier, it.nonce, it.deadline
        )));
    }

    /// @notice A buyer places its own order.
    function placeOrder(OrderIntent calldata it, bytes calldata tierProof)
        external whenNotPaused nonReentrant returns (uint256)
    {
        if (it.buyer != msg.sender) revert NotBuyer(it.buyer, msg.sender);
        return _place(it, intentDigest(it), tierProof);
    }

    /// @notice The orchestrator places an order the buyer signed.
    function placeSignedOrder(OrderIntent calldata it, bytes calldata signature, bytes calldata tierProof)
        external onlyRole(ORCHESTRATOR_ROLE) whenNotPaused nonReentrant returns (uint256)
    {
        return _placeSigned(it, signature, tierProof);
    }

    /// @notice Many signed orders in one transaction; all or nothing.
    function placeSignedOrders(OrderIntent[] calldata its, bytes[] calldata signatures, bytes[] calldata proofs)
        external onlyRole(ORCHESTRATOR_ROLE) whenNotPaused nonReentrant returns (uint256 first)
    {
        if (its.length != signatures.length || its.length != proofs.length) revert LengthMismatch();
        first = orderCount + 1;
        for (uint256 i = 0; i < its.length; i++) {
            _placeSigned(its[i], signatures[i], proofs[i]);
        }
    }

    function _placeSigned(OrderIntent calldata it, bytes calldata signature, bytes calldata tierProof)
        private returns (uint256)
    {
        bytes32 digest = intentDigest(it);
        (address signer, ECDSA.RecoverError err, ) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != it.buyer) revert BadSignature(it.buyer, signer);
        return _place(it, digest, tierProof);
    }

    function _place(OrderIntent calldata it, bytes32 digest, bytes calldata tierProof) private returns (uint256 id) {
        if (block.timestamp > it.deadline) revert IntentExpired(it.deadline);
        if (it.nonce != nonces[it.buyer]) revert BadNonce(it.buyer, nonces[it.buyer], it.nonce);
        if (it.units == 0) revert InvalidOrder("units");
        if (it.duration == 0) revert InvalidOrder("duration");
        if (it.deviceClass == 0 || it.deviceClass > registry.DEVICE_CLASSES()) revert InvalidOrder("deviceClass");
        uint256 escrow = _cost(it.units, it.duration, it.maxPrice);
        if (escrow == 0) revert InvalidOrder("maxPrice");
        uint256 available = balances[it.buyer];
        if (available < escrow) revert InsufficientDeposit(it.buyer, escrow, available);

        nonces[it.buyer] = it.nonce + 1;
        balances[it.buyer] = available - escrow;
        totalFree -= escrow;
        totalEscrow += escrow;
        id = ++orderCount;
        Order storage o = _orders[id];
        o.buyer = it.buyer;
        o.deviceClass = it.deviceClass;
        o.tier = it.tier;
        o.state = State.Open;
        o.units = it.units;
        o.duration = it.duration;
        o.maxPrice = it.maxPrice;
        o.escrow = escrow;
        o.requirement = it.requirement;
        o.digest = digest;
        _emitPlaced(id, o);
        if (it.tier != 0) {
            // the gate reverts unless the proof is fresh, for this order, chain, market and epoch
            if (address(tierGate) == address(0)) revert TiersDisabled();
            tierGate.consume(it.tier, tierGate.currentEpoch(), digest, it.buyer, tierProof);
        }
    }

    function _emitPlaced(uint256 id, Order storage o) private {
        emit OrderPlaced(id, o.buyer, o.digest, o.requirement, o.deviceClass, o.units, o.duration, o.maxPrice, o.tier,
            o.escrow);
    }

    // ------------------------------------------------------------------ lifecycle

    /// @notice A manual assignment, outside any matching batch (its `Assigned` names batch 0).
    function assign(uint256 id, address provider, address[] calldata backups, uint256 price)
        external onlyRole(ORCHESTRATOR_ROLE) whenNotPaused
    {
        _assign(id, provider, backups, price, bytes32(0));
    }

    /// @notice Binds one matching round: records the batch (the hashes of its inputs and decisions)
    /// and assigns every order it decided, in one transaction, all or nothing. Each batch id is
    /// recorded once. Empty arrays record a round that assigned nothing (`orders == 0`).
    function assignBatch(bytes32 batchId, bytes32 inputsHash, bytes32 decisionsHash, uint256[] calldata ids,
        address[] calldata providers, address[][] calldata backups, uint256[] calldata prices)
        external onlyRole(ORCHESTRATOR_ROLE) whenNotPaused
    {
        if (ids.length != providers.length || ids.length != backups.length || ids.length != prices.length) {
            revert LengthMismatch();
        }
        if (batchId == bytes32(0)) revert ZeroBatchId();
        if (batches[batchId].blockNumber != 0) revert BatchExists(batchId);
        // effects before the registry calls in `_assign`: a batch id is spent before anything else runs
        batches[batchId] = Batch(inputsHash, decisionsHash, uint64(block.number), uint64(ids.length));
        emit BatchCommitted(batchId, inputsHash, decisionsHash, ids.length);
        _assignAll(batchId, ids, providers, backups, prices);
    }

    /// @dev The loop of `assignBatch`, apart so that its arguments fit the EVM's reachable stack.
    function _assignAll(bytes32 batchId, uint256[] calldata ids, address[] calldata providers,
        address[][] calldata backups, uint256[] calldata prices) private
    {
        for (uint256 i = 0; i < ids.length; i++) {
            _assign(ids[i], providers[i], backups[i], prices[i], batchId);
        }
    }

    function _assign(uint256 id, address provider, address[] calldata backups, uint256 price, bytes32 batchId)
        private
    {
        Order storage o = _order(id, State.Open);
        if (!registry.isEligible(provider)) revert ProviderNotEligible(provider);
        if (price > o.maxPrice) revert PriceAboveCeiling(id, price, o.maxPrice);
        if (backups.length > MAX_BACKUPS) revert TooManyBackups(backups.length);
        o.provider = provider;
        o.price = price;
        o.backups = backups;
        o.state = State.Assigned;
        o.acceptDeadline = uint64(block.timestamp + acceptWindow);
        registry.leaseStarted(provider);
        emit Assigned(id, provider, batchId, price, backups, o.acceptDeadline);
    }

    function accept(uint256 id) external {
        Order storage o = _order(id, State.Assigned);
        if (msg.sender != o.provider) revert NotAssignedProvider(id, msg.sender);
        if (block.timestamp > o.acceptDeadline) revert AcceptanceExpired(id, o.acceptDeadline);
        o.state = State.Running;
        o.startedAt = uint64(block.timestamp);
        emit Accepted(id, msg.sender, o.startedAt);
    }

    /// @notice The provider reports the result and the usage it metered (unit-seconds).
    function complete(uint256 id, bytes32 result, uint256 usage) external {
        Order storage o = _order(id, State.Running);
        if (msg.sender != o.provider) revert NotAssignedProvider(id, msg.sender);
        uint256 maxUsage = uint256(o.units) * (o.duration - o.served);
        if (usage > maxUsage) revert UsageTooHigh(id, usage, maxUsage);
        o.state = State.Completed;
        o.result = result;
        o.usage = usage;
        o.completedAt = uint64(block.timestamp);
        emit Completed(id, msg.sender, result, usage);
    }

    /// @notice After the dispute window anyone may settle: provider paid, fee taken, rest refunded.
    function settle(uint256 id) external nonReentrant {
        Order storage o = _order(id, State.Completed);
        uint64 until = o.completedAt + uint64(disputeWindow);
        if (block.timestamp < until) revert DisputeWindowOpen(id, until);
        uint256 pay = _min(_cost(1, o.usage, o.price), o.escrow);
        (uint256 fee, uint256 refund) = _payProvider(o, pay);
        _refundRest(o);
        o.state = State.Settled;
        registry.leaseEnded(o.provider);
        emit Settled(id, o.provider, pay, fee, refund);
    }

    /// @notice The buyer cancels before the provider accepts: everything back.
    function cancel(uint256 id) external nonReentrant {
        Order storage o = _orderAny(id);
        if (msg.sender != o.buyer) revert NotOrderOwner(id, msg.sender);
        if (o.state == State.Assigned) {
            registry.leaseEnded(o.provider);
        } else if (o.state != State.Open) {
            revert WrongState(id, o.state, State.Open);
        }
        uint256 refund = _refundRest(o);
        o.state = State.Cancelled;
        emit Cancelled(id, msg.sender, refund);
    }

    /// @notice After the acceptance deadline anyone may call: the late provider is slashed and the
    /// next eligible backup assigned, or the buyer refunded when none is left.
    function timeoutAcceptance(uint256 id) external nonReentrant {
        Order storage o = _order(id, State.Assigned);
        if (block.timestamp <= o.acceptDeadline) revert AcceptanceNotExpired(id, o.acceptDeadline);
        address late = o.provider;
        registry.leaseEnded(late);
        uint256 slashed = _slash(o, id, late, missSlashBps, ProviderRegistry.SlashReason.MissedAcceptance);
        address next = _nextBackup(o, late);
        uint256 refund;
        if (next == address(0)) {
            refund = _refundRest(o);
            o.state = State.Refunded;
        }
        emit AcceptanceTimedOut(id, late, next, slashed, refund, o.acceptDeadline);
    }

    /// @notice The orchestrator reports a failure mid-lease: pro-rata pay for the time served, a
    /// slice of the provider's stake to the buyer (larger for higher tiers), and the remaining time
    /// to the next backup or back to the buyer.
    function fail(uint256 id) external onlyRole(ORCHESTRATOR_ROLE) nonReentrant {
        Order storage o = _order(id, State.Running);
        Failure memory f; // kept in memory: too many values for the stack otherwise
        f.failed = o.provider;
        f.served = uint64(_min(block.timestamp - o.startedAt, o.duration - o.served));
        f.paid = _min(_cost(o.units, f.served, o.price), o.escrow);
        (f.fee, ) = _payProvider(o, f.paid);
        o.served += f.served;
        registry.leaseEnded(f.failed);
        f.slashed = _slash(o, id, f.failed, failSlashBps * (1 + uint256(o.tier)),
            ProviderRegistry.SlashReason.FailureMidLease);
        f.next = o.served < o.duration ? _nextBackup(o, f.failed) : address(0);
        if (f.next == address(0)) {
            f.refund = _refundRest(o);
            o.state = State.Refunded;
        }
        emit OrderFailed(id, f.failed, f.next, f.served, f.paid, f.fee, f.slashed, f.refund, o.acceptDeadline);
    }

    function dispute(uint256 id) external {
        Order storage o = _order(id, State.Completed);
        if (msg.sender != o.buyer) revert NotOrderOwner(id, msg.sender);
        uint64 until = o.completedAt + uint64(disputeWindow);
        if (block.timestamp >= until) revert DisputeWindowClosed(id, until);
        o.state = State.Disputed;
        emit Disputed(id, msg.sender);
    }

    /// @notice The arbiter splits a disputed order: `providerAmount` (at most the metered cost) to the
    /// provider, the rest of the escrow to the buyer, and up to `slashAmount` of stake to the buyer.
    function resolve(uint256 id, uint256 providerAmount, uint256 slashAmount)
        external onlyRole(ARBITER_ROLE) nonReentrant
    {
        Order storage o = _order(id, State.Disputed);
        uint256 maximum = _min(_cost(1, o.usage, o.price), o.escrow);
        if (providerAmount > maximum) revert SplitTooLarge(id, providerAmount, maximum);
        (uint256 fee, uint256 refund) = _payProvider(o, providerAmount);
        uint256 slashed;
        if (slashAmount != 0) {
            slashed = registry.slash(o.provider, slashAmount, ProviderRegistry.SlashReason.LostDispute, id);
            _credit(o.buyer, slashed);
        }
        _refundRest(o);
        o.state = State.Resolved;
        registry.leaseEnded(o.provider);
        emit Resolved(id, o.provider, providerAmount, fee, refund, slashed);
    }

    // ------------------------------------------------------------------ internals

    function _order(uint256 id, State expected) private view returns (Order storage o) {
        o = _orderAny(id);
        if (o.state != expected) revert WrongState(id, o.state, expected);
    }

    function _orderAny(uint256 id) private view returns (Order storage o) {
        o = _orders[id];
        if (o.state == State.None) revert NoSuchOrder(id);
    }

    /// @dev Pays `pay` out of the order's escrow to its provider, less the operator's fee.
    /// Returns the fee and the escrow left (what a refund would be).
    function _payProvider(Order storage o, uint256 pay) private returns (uint256 fee, uint256 left) {
        fee = pay * feeBps / 10_000;
        o.escrow -= pay;
        totalEscrow -= pay;
        _credit(o.provider, pay - fee);
        _credit(feeRecipient, fee);
        left = o.escrow;
    }

    function _refundRest(Order storage o) private returns (uint256 refund) {
        refund = o.escrow;
        o.escrow = 0;
        totalEscrow -= refund;
        _credit(o.buyer, refund);
    }

    function _credit(address to, uint256 amount) private {
        if (amount == 0) return;
        balances[to] += amount;
        totalFree += amount;
    }

    function _slash(Order storage o, uint256 id, address who, uint256 bps, ProviderRegistry.SlashReason reason)
        private returns (uint256 slashed)
    {
        uint256 amount = registry.stakeOf(who) * _min(bps, 10_000) / 10_000;
        if (amount == 0) return 0;
        slashed = registry.slash(who, amount, reason, id);
        _credit(o.buyer, slashed);
    }

    /// @dev Moves the order to its next eligible backup (Assigned, fresh deadline), or returns 0.
    function _nextBackup(Order storage o, address previous) private returns (address) {
        while (o.nextBackup < o.backups.length) {
            address candidate = o.backups[o.nextBackup];
            o.nextBackup += 1;
            if (candidate != previous && registry.isEligible(candidate)) {
                o.provider = candidate;
                o.state = State.Assigned;
                o.acceptDeadline = uint64(block.timestamp + acceptWindow);
                registry.leaseStarted(candidate);
                return candidate;
            }
        }
        return address(0);
    }

    /// @dev units x seconds x price-per-unit-hour / 3600, rounded up so escrow always covers the cost.
    function _cost(uint256 units, uint256 seconds_, uint256 pricePerHour) private pure returns (uint256) {
        uint256 raw = units * seconds_ * pricePerHour;
        return raw == 0 ? 0 : (raw - 1) / 3600 + 1;
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }

    // ------------------------------------------------------------------ views

    function getOrder(uint256 id) external view returns (Order memory) {
        return _orderAny(id);
    }

    function stateOf(uint256 id) external view returns (State) {
        return _orders[id].state;
    }

    /// @notice What the market owes in total: every free balance plus every live escrow.
    function totalOwed() external view returns (uint256) {
        return totalFree + totalEscrow;
    }

    function held() external view returns (uint256) {
        return _held();
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
