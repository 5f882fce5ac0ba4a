// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {AssetHolder} from "./lib/AssetHolder.sol";
import {ProviderRegistry} from "./ProviderRegistry.sol";
import {IComputeMarket} from "./interfaces/IComputeMarket.sol";
import {ITierGate} from "./interfaces/ITierGate.sol";

/// @title ComputeMarket: orders with escrow, the lease lifecycle, settlement and its audit trail.
/// @notice Buyers deposit once, then place orders by their own transaction or by an EIP-712 signed
/// intent that an orchestrator submits (so an engine can batch, but never spend a buyer's money
/// without the buyer's signature; ERC-1271 contract wallets sign too). The state machine is drawn in
/// `IComputeMarket`. A matching round of an engine is bound by ONE transaction, `assignBatch`: it
/// records the batch (hashes of the round's inputs and decisions) and assigns every order that is
/// still assignable, reporting the others with `AssignmentSkipped` instead of reverting the round.
///
/// What no role can do (docs/trust.md has each bound with its test):
/// - take escrow: a provider is paid only for time that elapsed while it held the lease
///   (`complete` caps usage at units x elapsed seconds), at a price between its registered ask and
///   the buyer's ceiling; an orchestrator cannot assign below a provider's ask;
/// - lock money forever: a Running lease can be expired by anyone after its end plus `runGrace`, a
///   dispute lapsed by anyone after `arbitrationWindow`;
/// - change an order's terms after it is placed: settings are versioned and each order keeps its own;
/// - farm slashes: slashed stake is credited to the buyer only up to what the buyer paid providers for
///   this order (its loss); the rest is burned; every slash is capped per event and per role;
/// - change roles or settings at once: the admin of roles and settings is a timelock (deployment).
///
/// Payments are pulled (`withdraw`). Escrow is conserved:
///     held asset == totalFree + totalEscrow + totalBurned
/// where totalFree is the sum of every account's withdrawable balance, totalEscrow the sum of the
/// escrow still reserved by live orders, and totalBurned slashed stake awaiting `burn` (which anyone
/// may call: it sends it to the burn address). No transition moves value out of the contract.
contract ComputeMarket is IComputeMarket, Pausable, ReentrancyGuard, EIP712, AssetHolder {

    bytes32 public constant ORDER_INTENT_TYPEHASH = keccak256(
        "OrderIntent(address buyer,bytes32 requirement,uint8 deviceClass,uint32 units,uint64 duration,"
        "uint256 maxPrice,uint8 tier,uint256 nonce,uint64 deadline)"
    );

    uint256 public constant MAX_FEE_BPS = 1_000;
    uint256 public constant MAX_MISS_SLASH_BPS = 1_000;
    uint256 public constant MAX_FAIL_SLASH_BPS = 2_000;
    uint256 public constant MAX_DISPUTE_SLASH_BPS = 5_000;
    uint256 public constant MIN_ACCEPT_WINDOW = 30; // more than two L1 blocks
    uint256 public constant MIN_DISPUTE_WINDOW = 60;
    uint256 public constant MIN_ARBITRATION_WINDOW = 60;
    uint256 public constant MIN_RUN_GRACE = 60;
    uint256 public constant MAX_WINDOW = 30 days;
    uint256 public constant MAX_BACKUPS = 8;
    /// @notice The longest lease an order may ask for (so every lease has a reachable end).
    uint256 public constant MAX_DURATION = 366 days;

    struct Failure {
        address failed;
        address next;
        uint64 served;
        uint256 paid;
        uint256 fee;
        uint256 compensation;
        uint256 refund;
    }

    ProviderRegistry public immutable registry;
    ITierGate public immutable tierGate;
    /// @notice Changes settings and the set of orchestrators: the deployment's timelock.
    address public immutable admin;
    /// @notice The operator: receives the fee, may pause placement and assignment (never an exit).
    address public immutable feeRecipient;
    /// @notice Engines allowed to place signed orders, assign and report failures (one key per engine).
    mapping(address => bool) public orchestrators;

    uint32 public termsVersion;
    uint256 public orderCount;
    uint256 public totalFree;
    uint256 public totalEscrow;
    uint256 public totalBurned;

    /// @notice The terms of each settings version (the current one is `termsVersion`).
    mapping(uint32 => Settings) public terms;
    mapping(uint256 => Order) private _orders;
    mapping(address => uint256) public balances;
    mapping(address => uint256) public nonces;
    mapping(bytes32 => Batch) public batches;

    /// @param asset_ the payment asset (address(0) for ETH); must be the registry's
    /// @param registry_ the provider registry this market is bound to
    /// @param tierGate_ the zero-knowledge tier gate (address(0): tiers disabled)
    /// @param admin_ who changes settings and orchestrators: a timelock on any real network
    /// @param operator the fee recipient and pauser
    /// @param orchestrator the first engine's key
    /// @param settings the first terms (version 1)
    constructor(
        address asset_,
        ProviderRegistry registry_,
        ITierGate tierGate_,
        address admin_,
        address operator,
        address orchestrator,
        Settings memory settings
    ) EIP712("CONA ComputeMarket", "1") AssetHolder(asset_) {
        if (address(registry_) == address(0)) revert ZeroAddress();
        if (admin_ == address(0)) revert ZeroAddress();
        if (operator == address(0)) revert ZeroAddress();
        if (orchestrator == address(0)) revert ZeroAddress();
        if (registry_.asset() != asset_) revert AssetMismatch(asset_, registry_.asset());
        registry = registry_;
        tierGate = tierGate_;
        admin = admin_;
        feeRecipient = operator;
        orchestrators[orchestrator] = true;
        emit OrchestratorSet(orchestrator, true);
        _setSettings(settings);
    }

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    modifier onlyOperator() {
        if (msg.sender != feeRecipient) revert NotOperator(msg.sender);
        _;
    }

    modifier onlyOrchestrator() {
        if (!orchestrators[msg.sender]) revert NotOrchestrator(msg.sender);
        _;
    }

    /// @dev Only the registry sends ETH outside `deposit`: the proceeds of a slash.
    receive() external payable {
        if (msg.sender != address(registry) || asset != address(0)) revert UnexpectedEther(msg.sender);
    }

    // ------------------------------------------------------------------ operator

    /// @notice New terms for orders placed from now on; orders already placed keep theirs.
    /// @param s the new settings, each within the MIN_/MAX_ bounds
    /// @dev Emits `SettingsChanged` with the new version.
    function setSettings(Settings calldata s) external onlyAdmin {
        _setSettings(s);
    }

    /// @notice Allows or revokes an engine's key (through the timelock, so users see it coming).
    /// @param who the orchestrator key
    /// @param allowed whether it may act
    /// @dev Emits `OrchestratorSet`.
    function setOrchestrator(address who, bool allowed) external onlyAdmin {
        if (who == address(0)) revert ZeroAddress();
        orchestrators[who] = allowed;
        emit OrchestratorSet(who, allowed);
    }

    function _setSettings(Settings memory s) private {
        _bound(Setting.FeeBps, s.feeBps, 0, MAX_FEE_BPS);
        _bound(Setting.MissSlashBps, s.missSlashBps, 0, MAX_MISS_SLASH_BPS);
        _bound(Setting.FailSlashBps, s.failSlashBps, 0, MAX_FAIL_SLASH_BPS);
        _bound(Setting.DisputeSlashBps, s.disputeSlashBps, 0, MAX_DISPUTE_SLASH_BPS);
        _bound(Setting.AcceptWindow, s.acceptWindow, MIN_ACCEPT_WINDOW, 1 days);
        _bound(Setting.DisputeWindow, s.disputeWindow, MIN_DISPUTE_WINDOW, MAX_WINDOW);
        _bound(Setting.ArbitrationWindow, s.arbitrationWindow, MIN_ARBITRATION_WINDOW, MAX_WINDOW);
        _bound(Setting.RunGrace, s.runGrace, MIN_RUN_GRACE, 7 days);
        if (s.arbiter == address(0)) revert SettingOutOfBounds(Setting.Arbiter, 0, 1, type(uint160).max);
        uint32 version = ++termsVersion;
        terms[version] = s;
        emit SettingsChanged(version, s.feeBps, s.missSlashBps, s.failSlashBps, s.disputeSlashBps, s.acceptWindow,
            s.disputeWindow, s.arbitrationWindow, s.runGrace, s.arbiter);
    }

    function _bound(Setting which, uint256 value, uint256 lo, uint256 hi) private pure {
        if (value < lo || value > hi) revert SettingOutOfBounds(which, value, lo, hi);
    }

    /// @notice Stops new placements and assignments (withdrawals, settlement and every exit stay open).
    function pause() external onlyOperator {
        _pause();
    }

    /// @notice Lifts `pause`.
    function unpause() external onlyOperator {
        _unpause();
    }

    // ------------------------------------------------------------------ money in and out

    /// @notice Adds to the caller's balance what arrives of `amount` (ETH: send exactly `amount`).
    /// @param amount what to take from the caller
    /// @dev Emits `Deposited` with the amount credited and the new balance.
    function deposit(uint256 amount) external payable nonReentrant {
        uint256 received = _pullIn(msg.sender, amount);
        balances[msg.sender] += received;
        totalFree += received;
        emit Deposited(msg.sender, received, balances[msg.sender]);
    }

    /// @notice Pays out `amount` of the caller's balance (escrow locked in live orders is not in it).
    /// @param amount what to withdraw, at most `balances(caller)`
    /// @dev Emits `Withdrawn`.
    function withdraw(uint256 amount) external nonReentrant {
        uint256 available = balances[msg.sender];
        if (amount == 0) revert ZeroAmount();
        if (amount > available) revert InsufficientBalance(msg.sender, amount, available);
        balances[msg.sender] = available - amount;
        totalFree -= amount;
        emit Withdrawn(msg.sender, amount, available - amount);
        _payOut(msg.sender, amount);
    }

    /// @notice Sends the slashed stake set aside for burning to the burn address (anyone may call).
    /// @dev Emits `BurnFlushed`.
    function burn() external nonReentrant {
        uint256 amount = totalBurned;
        if (amount == 0) revert ZeroAmount();
        totalBurned = 0;
        emit BurnFlushed(amount);
        _payOut(BURN, amount);
    }

    // ------------------------------------------------------------------ placing orders

    /// @notice The EIP-712 digest of an intent: what the buyer signs and what a tier proof binds to.
    /// @param it the intent
    /// @return the typed-data digest
    function intentDigest(OrderIntent calldata it) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(
            ORDER_INTENT_TYPEHASH, it.buyer, it.requirement, it.deviceClass, it.units, it.duration, it.maxPrice,
            it.tier, it.nonce, it.deadline
        )));
    }

    /// @notice Revokes every signed intent of the caller with a nonce below `nonce`.
    /// @param nonce the caller's next valid nonce; must be above the current one
    /// @dev Emits `NoncesInvalidated`.
    function invalidateNonces(uint256 nonce) external {
        uint256 current = nonces[msg.sender];
        if (nonce <= current) revert NonceNotAhead(msg.sender, current, nonce);
        nonces[msg.sender] = nonce;
        emit NoncesInvalidated(msg.sender, nonce);
    }

    /// @notice A buyer places its own order; its escrow (units x duration x maxPrice) leaves its balance.
    /// @param it the intent (`it.buyer` must be the caller)
    /// @param tierProof a tier proof when `it.tier > 0` (docs/zk.md)
    /// @return the order id
    /// @dev Emits `OrderPlaced`.
    function placeOrder(OrderIntent calldata it, bytes calldata tierProof)
        external whenNotPaused nonReentrant returns (uint256)
    {
        if (it.buyer != msg.sender) revert NotBuyer(it.buyer, msg.sender);
        return _place(it, intentDigest(it), tierProof);
    }

    /// @notice An orchestrator places orders their buyers signed (EOA or ERC-1271 wallets), in one
    /// transaction; all or nothing (the engine simulates first).
    /// @param its the intents
    /// @param signatures one per intent
    /// @param proofs one per intent (empty for tier 0)
    /// @return first the id of the first order placed; the others follow in order
    /// @dev Emits one `OrderPlaced` per intent.
    function placeSignedOrders(OrderIntent[] calldata its, bytes[] calldata signatures, bytes[] calldata proofs)
        external onlyOrchestrator whenNotPaused nonReentrant returns (uint256 first)
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
        if (!SignatureChecker.isValidSignatureNow(it.buyer, digest, signature)) {
            revert BadSignature(it.buyer);
        }
        return _place(it, digest, tierProof);
    }

    function _place(OrderIntent calldata it, bytes32 digest, bytes calldata tierProof) private returns (uint256 id) {
        if (block.timestamp > it.deadline) revert IntentExpired(it.deadline);
        if (it.nonce != nonces[it.buyer]) revert BadNonce(it.buyer, nonces[it.buyer], it.nonce);
        if (it.units == 0) revert InvalidOrder(OrderField.Units);
        if (it.duration == 0 || it.duration > MAX_DURATION) revert InvalidOrder(OrderField.Duration);
        if (it.deviceClass == 0 || it.deviceClass > registry.DEVICE_CLASSES()) revert InvalidOrder(OrderField.DeviceClass);
        uint256 escrow = _cost(it.units, it.duration, it.maxPrice);
        // slither-disable-next-line incorrect-equality a zero check on an amount, not a comparison with a balance
        if (escrow == 0) revert InvalidOrder(OrderField.MaxPrice);
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
        o.terms = termsVersion;
        o.maxPrice = it.maxPrice;
        o.escrow = escrow;
        o.requirement = it.requirement;
        o.digest = digest;
        _emitPlaced(id, o);
        if (it.tier != 0) {
            // the gate reverts unless the proof is fresh, for this order, chain, market and epoch
            if (address(tierGate) == address(0)) revert TiersDisabled();
            // slither-disable-next-line unused-return the gate emits the nullifier it spends and reverts on any failure
            tierGate.consume(it.tier, tierGate.currentEpoch(), digest, it.buyer, tierProof);
        }
    }

    function _emitPlaced(uint256 id, Order storage o) private {
        emit OrderPlaced(id, o.buyer, o.digest, o.requirement, o.deviceClass, o.units, o.duration, o.maxPrice, o.tier,
            o.escrow, o.terms);
    }

    // ------------------------------------------------------------------ assignment


    /// @notice Binds one matching round (a manual assignment is a round of one): records the batch (the hashes of its inputs and decisions) and
    /// assigns every order it decided that is still assignable; the others are reported with
    /// `AssignmentSkipped` (the order is unchanged), so one cancellation cannot revert a round.
    /// @param batchId the round's id (never reused)
    /// @param inputsHash hash of the round's stored inputs
    /// @param decisionsHash hash of the round's decisions
    /// @param ids the orders
    /// @param providers one per order
    /// @param backups one list per order
    /// @param prices one per order
    /// @dev Emits `BatchCommitted` (with the number assigned), then `Assigned` or `AssignmentSkipped` per order.
    function assignBatch(bytes32 batchId, bytes32 inputsHash, bytes32 decisionsHash, uint256[] calldata ids,
        address[] calldata providers, address[][] calldata backups, uint256[] calldata prices)
        external onlyOrchestrator whenNotPaused
    {
        if (ids.length != providers.length || ids.length != backups.length || ids.length != prices.length) {
            revert LengthMismatch();
        }
        if (batchId == bytes32(0)) revert ZeroBatchId();
        if (batches[batchId].blockNumber != 0) revert BatchExists(batchId);
        _requireBound();
        // the batch id is spent before any registry call runs
        batches[batchId] = Batch(inputsHash, decisionsHash, uint64(block.number), 0);
        _assignAll(batchId, ids, providers, backups, prices);
        _emitCommitted(batchId);
    }

    /// @dev After the loop: the record carries the count (apart, for the EVM's reachable stack).
    function _emitCommitted(bytes32 batchId) private {
        Batch storage b = batches[batchId];
        emit BatchCommitted(batchId, b.inputsHash, b.decisionsHash, b.orders);
    }

    /// @dev The loop of `assignBatch`, apart so that its arguments fit the EVM's reachable stack.
    function _assignAll(bytes32 batchId, uint256[] calldata ids, address[] calldata providers,
        address[][] calldata backups, uint256[] calldata prices) private
    {
        for (uint256 i = 0; i < ids.length; i++) {
            _tryAssign(ids[i], providers[i], backups[i], prices[i], batchId);
        }
    }

    /// @dev One entry of a batch: assigned (and counted in the batch record, written earlier in this
    /// transaction, so the count costs a warm write), or reported with `AssignmentSkipped` and left as it was.
    function _tryAssign(uint256 id, address provider, address[] calldata backups, uint256 price, bytes32 batchId)
        private
    {
        Order storage o = _orders[id];
        Reason why = o.state != State.Open ? Reason.OrderNotOpen : _unassignable(o, provider, backups, price);
        if (why != Reason.None) {
            emit AssignmentSkipped(id, provider, batchId, why);
            return;
        }
        _assign(o, id, provider, backups, price, batchId);
        batches[batchId].orders += 1;
    }

    /// @dev The registry must count this market's leases and send it slashes, or nothing may be assigned.
    function _requireBound() private view {
        address bound = registry.market();
        if (bound != address(this)) revert RegistryNotBound(bound);
    }

    /// @dev Why `provider` cannot take Open order `o` at `price` (`Reason.None`: it can).
    function _unassignable(Order storage o, address provider, address[] calldata backups, uint256 price)
        private view returns (Reason)
    {
        if (provider == address(0)) return Reason.ZeroProvider;
        if (backups.length > MAX_BACKUPS) return Reason.TooManyBackups;
        for (uint256 i = 0; i < backups.length; i++) {
            if (backups[i] == address(0)) return Reason.ZeroBackup;
        }
        if (!registry.isEligible(provider)) return Reason.ProviderIneligible;
        if (price > o.maxPrice) return Reason.PriceAboveCeiling;
        if (price < registry.priceOf(provider, o.deviceClass)) return Reason.PriceBelowAsk;
        return Reason.None;
    }

    function _assign(Order storage o, uint256 id, address provider, address[] calldata backups, uint256 price,
        bytes32 batchId) private
    {
        o.provider = provider;
        o.price = price;
        o.backups = backups;
        o.state = State.Assigned;
        o.acceptDeadline = uint64(block.timestamp + terms[o.terms].acceptWindow);
        registry.leaseStarted(provider);
        emit Assigned(id, provider, batchId, price, backups, o.acceptDeadline);
    }

    // ------------------------------------------------------------------ the lease

    /// @notice The assigned provider accepts before its deadline; the lease starts now.
    /// @param id the order (Assigned to the caller)
    /// @dev Emits `Accepted`.
    function accept(uint256 id) external {
        Order storage o = _order(id, State.Assigned);
        if (msg.sender != o.provider) revert NotAssignedProvider(id, msg.sender);
        if (block.timestamp > o.acceptDeadline) revert AcceptanceExpired(id, o.acceptDeadline);
        o.state = State.Running;
        o.startedAt = uint64(block.timestamp);
        emit Accepted(id, msg.sender, o.startedAt);
    }

    /// @notice The provider reports the result and the usage it metered, in unit-seconds: at most the
    /// order's units times the seconds elapsed since it accepted (at least one), and never past the lease.
    /// @param id the order (Running on the caller)
    /// @param result the keccak of the result bytes (marketplace/results.py)
    /// @param usage unit-seconds metered
    /// @dev Emits `Completed`.
    function complete(uint256 id, bytes32 result, uint256 usage) external {
        Order storage o = _order(id, State.Running);
        if (msg.sender != o.provider) revert NotAssignedProvider(id, msg.sender);
        uint256 cap = _maxUsage(o);
        if (usage > cap) revert UsageTooHigh(id, usage, cap);
        o.state = State.Completed;
        o.result = result;
        o.usage = usage;
        o.completedAt = uint64(block.timestamp);
        emit Completed(id, msg.sender, result, usage);
    }

    /// @notice After the dispute window anyone may settle: provider paid, fee taken, rest refunded.
    /// @param id the order (Completed)
    /// @dev Emits `Settled`.
    function settle(uint256 id) external nonReentrant {
        Order storage o = _order(id, State.Completed);
        uint64 until = o.completedAt + terms[o.terms].disputeWindow;
        if (block.timestamp < until) revert DisputeWindowOpen(id, until);
        (uint256 pay, uint256 fee, uint256 refund) = _settleSplit(o);
        o.state = State.Settled;
        registry.leaseEnded(o.provider);
        emit Settled(id, o.provider, pay, fee, refund);
    }

    /// @notice The buyer cancels before the provider accepts: everything back.
    /// @param id the order (Open or Assigned; the caller's)
    /// @dev Emits `Cancelled`.
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

    /// @notice After the acceptance deadline anyone may call: the late provider is slashed and the next
    /// eligible backup assigned at its own ask, or the buyer refunded when none is left.
    /// @param id the order (Assigned, deadline passed)
    /// @dev Emits `AcceptanceTimedOut` (and `Burned` for slashed stake beyond the buyer's loss).
    // The external callee is the immutable registry, whose only outgoing call pays this market (receive()
    // changes nothing); every entry point that moves money is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth
    function timeoutAcceptance(uint256 id) external nonReentrant {
        Order storage o = _order(id, State.Assigned);
        if (block.timestamp <= o.acceptDeadline) revert AcceptanceNotExpired(id, o.acceptDeadline);
        address late = o.provider;
        registry.leaseEnded(late);
        uint256 compensation = _slash(o, id, late, terms[o.terms].missSlashBps,
            ProviderRegistry.SlashReason.MissedAcceptance);
        address next = _nextBackup(o, late);
        uint256 refund = 0;
        if (next == address(0)) {
            refund = _refundRest(o);
            o.state = State.Refunded;
        }
        emit AcceptanceTimedOut(id, late, next, compensation, refund, o.acceptDeadline, o.price);
    }

    /// @notice An orchestrator reports a failure mid-lease: pro-rata pay for the time served, a slice of
    /// the provider's stake (larger for higher tiers, capped), and the remaining time to the next backup
    /// or back to the buyer. A report that races the provider's completion (the order is Completed and
    /// its dispute window open) opens a dispute instead: the order's arbiter decides.
    /// @param id the order (Running, or Completed within its dispute window)
    /// @dev Emits `OrderFailed` (or `Disputed`), and `Burned` for slashed stake beyond the buyer's loss.
    // The external callee is the immutable registry, whose only outgoing call pays this market (receive()
    // changes nothing); every entry point that moves money is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth
    function fail(uint256 id) external onlyOrchestrator nonReentrant {
        Order storage o = _orderAny(id);
        if (o.state == State.Completed) {
            _openDispute(o, id);
            return;
        }
        if (o.state != State.Running) revert WrongState(id, o.state, State.Running);
        Settings storage t = terms[o.terms];
        Failure memory f = Failure(o.provider, address(0), 0, 0, 0, 0, 0); // in memory: too many values for the stack
        f.served = uint64(_min(block.timestamp - o.startedAt, o.duration - o.served));
        f.paid = _min(_cost(o.units, f.served, o.price), o.escrow);
        (f.fee, ) = _payProvider(o, f.paid);
        o.served += f.served;
        registry.leaseEnded(f.failed);
        f.compensation = _slash(o, id, f.failed, _min(uint256(t.failSlashBps) * (1 + uint256(o.tier)),
            MAX_FAIL_SLASH_BPS), ProviderRegistry.SlashReason.FailureMidLease);
        f.next = o.served < o.duration ? _nextBackup(o, f.failed) : address(0);
        if (f.next == address(0)) {
            f.refund = _refundRest(o);
            o.state = State.Refunded;
        }
        emit OrderFailed(id, f.failed, f.next, f.served, f.paid, f.fee, f.compensation, f.refund, o.acceptDeadline,
            o.price);
    }

    /// @notice Anyone may end a lease still Running after its end plus the grace period: the provider
    /// never completed, so it is paid nothing for the segment and slashed at the failure rate.
    /// @param id the order (Running, past startedAt + remaining duration + runGrace)
    /// @dev Emits `Expired` (and `Burned`).
    // The external callee is the immutable registry, whose only outgoing call pays this market (receive()
    // changes nothing); every entry point that moves money is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth
    function expire(uint256 id) external nonReentrant {
        Order storage o = _order(id, State.Running);
        // duration <= MAX_DURATION and runGrace <= 7 days: no uint64 overflow
        uint64 until = o.startedAt + (o.duration - o.served) + terms[o.terms].runGrace;
        if (block.timestamp <= until) revert LeaseNotOver(id, until);
        address provider = o.provider;
        registry.leaseEnded(provider);
        uint256 compensation = _slash(o, id, provider, terms[o.terms].failSlashBps,
            ProviderRegistry.SlashReason.FailureMidLease);
        uint256 refund = _refundRest(o);
        o.state = State.Refunded;
        emit Expired(id, provider, compensation, refund);
    }

    /// @notice The buyer disputes a completion within the dispute window.
    /// @param id the order (Completed; the caller's)
    /// @dev Emits `Disputed`.
    function dispute(uint256 id) external {
        Order storage o = _order(id, State.Completed);
        if (msg.sender != o.buyer) revert NotOrderOwner(id, msg.sender);
        _openDispute(o, id);
    }

    function _openDispute(Order storage o, uint256 id) private {
        uint64 until = o.completedAt + terms[o.terms].disputeWindow;
        if (block.timestamp >= until) revert DisputeWindowClosed(id, until);
        o.state = State.Disputed;
        o.disputedAt = uint64(block.timestamp);
        emit Disputed(id, msg.sender);
    }

    /// @notice The order's arbiter splits a disputed order: `providerAmount` (at most the metered cost) to
    /// the provider, the rest of the escrow to the buyer, and up to `slashAmount` of stake slashed (at most
    /// the order's `disputeSlashBps` of the stake), credited to the buyer up to its loss, the rest burned.
    /// @param id the order (Disputed)
    /// @param providerAmount the provider's pay, fee included
    /// @param slashAmount stake to slash
    /// @dev Emits `Resolved` (and `Burned`).
    // The external callee is the immutable registry, whose only outgoing call pays this market (receive()
    // changes nothing); every entry point that moves money is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth
    function resolve(uint256 id, uint256 providerAmount, uint256 slashAmount) external nonReentrant {
        Order storage o = _order(id, State.Disputed);
        Settings storage t = terms[o.terms];
        if (msg.sender != t.arbiter) revert NotArbiter(id, msg.sender);
        uint256 maximum = _min(_cost(1, o.usage, o.price), o.escrow);
        if (providerAmount > maximum) revert SplitTooLarge(id, providerAmount, maximum);
        uint256 slashCap = registry.stakeOf(o.provider) * t.disputeSlashBps / 10_000;
        if (slashAmount > slashCap) revert SlashTooLarge(id, slashAmount, slashCap);
        (uint256 fee, ) = _payProvider(o, providerAmount);
        uint256 compensation = _slashAmount(o, id, o.provider, slashAmount, ProviderRegistry.SlashReason.LostDispute);
        uint256 refund = _refundRest(o);
        o.state = State.Resolved;
        registry.leaseEnded(o.provider);
        emit Resolved(id, o.provider, providerAmount, fee, refund, compensation);
    }

    /// @notice Anyone may close a dispute the arbiter left past its deadline: settled as if undisputed.
    /// @param id the order (Disputed, past disputedAt + arbitrationWindow)
    /// @dev Emits `DisputeLapsed`.
    function lapse(uint256 id) external nonReentrant {
        Order storage o = _order(id, State.Disputed);
        uint64 until = o.disputedAt + terms[o.terms].arbitrationWindow;
        if (block.timestamp <= until) revert ArbitrationOpen(id, until);
        (uint256 pay, uint256 fee, uint256 refund) = _settleSplit(o);
        o.state = State.Resolved;
        registry.leaseEnded(o.provider);
        emit DisputeLapsed(id, o.provider, pay, fee, refund);
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

    /// @dev units x seconds elapsed since the lease started (at least one), within the remaining duration.
    function _maxUsage(Order storage o) private view returns (uint256) {
        uint256 elapsed = block.timestamp - o.startedAt;
        // slither-disable-next-line incorrect-equality a zero check on an amount, not a comparison with a balance
        if (elapsed == 0) elapsed = 1; // billing is per second: a lease that completes in its first second
        return uint256(o.units) * _min(elapsed, o.duration - o.served);
    }

    /// @dev The metered cost to the provider, the rest refunded.
    function _settleSplit(Order storage o) private returns (uint256 pay, uint256 fee, uint256 refund) {
        pay = _min(_cost(1, o.usage, o.price), o.escrow);
        (fee, ) = _payProvider(o, pay);
        refund = _refundRest(o);
    }

    /// @dev Pays `pay` out of the order's escrow to its provider, less the order's fee.
    /// Returns the fee and the escrow left (what a refund would be).
    function _payProvider(Order storage o, uint256 pay) private returns (uint256 fee, uint256 left) {
        fee = pay * terms[o.terms].feeBps / 10_000;
        o.escrow -= pay;
        o.paid += SafeCast.toUint128(pay);
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
        // slither-disable-next-line incorrect-equality a zero check on an amount, not a comparison with a balance
        if (amount == 0) return;
        balances[to] += amount;
        totalFree += amount;
    }

    function _slash(Order storage o, uint256 id, address who, uint256 bps, ProviderRegistry.SlashReason reason)
        private returns (uint256 compensation)
    {
        uint256 amount = registry.stakeOf(who) * _min(bps, 10_000) / 10_000;
        return _slashAmount(o, id, who, amount, reason);
    }

    /// @dev Slashes up to `amount` of `who`'s stake into the market; the buyer is credited at most what it
    /// paid providers for this order and was not yet compensated for (its loss), the rest is burned.
    function _slashAmount(Order storage o, uint256 id, address who, uint256 amount,
        ProviderRegistry.SlashReason reason) private returns (uint256 compensation)
    {
        // slither-disable-next-line incorrect-equality a zero check on an amount, not a comparison with a balance
        if (amount == 0) return 0;
        // credit what arrived, not what the registry says it sent (a fee-on-transfer token delivers less)
        uint256 before = _held();
        uint256 reported = registry.slash(who, amount, reason, id);
        uint256 taken = _min(_held() - before, reported);
        compensation = _min(taken, uint256(o.paid) - uint256(o.compensated));
        o.compensated += SafeCast.toUint128(compensation);
        _credit(o.buyer, compensation);
        uint256 burned = taken - compensation;
        if (burned != 0) {
            totalBurned += burned;
            emit Burned(id, who, burned);
        }
    }

    /// @dev Moves the order to its next eligible backup whose ask is within the buyer's ceiling (Assigned at
    /// that ask, fresh deadline), or returns 0.
    function _nextBackup(Order storage o, address previous) private returns (address) {
        while (o.nextBackup < o.backups.length) {
            address candidate = o.backups[o.nextBackup];
            o.nextBackup += 1;
            if (candidate == previous || !registry.isEligible(candidate)) continue;
            uint256 ask = registry.priceOf(candidate, o.deviceClass);
            if (ask > o.maxPrice) continue;
            o.provider = candidate;
            o.price = ask;
            o.state = State.Assigned;
            o.acceptDeadline = uint64(block.timestamp + terms[o.terms].acceptWindow);
            registry.leaseStarted(candidate);
            return candidate;
        }
        return address(0);
    }

    /// @dev units x seconds x price-per-unit-hour / 3600, rounded up so escrow always covers the cost.
    function _cost(uint256 units, uint256 seconds_, uint256 pricePerHour) private pure returns (uint256) {
        uint256 raw = units * seconds_ * pricePerHour;
        // slither-disable-next-line incorrect-equality a zero check on an amount, not a comparison with a balance
        return raw == 0 ? 0 : (raw - 1) / 3600 + 1;
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }

    // ------------------------------------------------------------------ views

    /// @notice An order as the contract holds it.
    /// @param id the order
    /// @return the order (reverts `NoSuchOrder` for an unknown id)
    function getOrder(uint256 id) external view returns (Order memory) {
        return _orderAny(id);
    }


    /// @notice The most a provider could report with `complete` now (0 unless Running).
    /// @param id the order
    /// @return unit-seconds
    function maxUsage(uint256 id) external view returns (uint256) {
        Order storage o = _orders[id];
        return o.state == State.Running ? _maxUsage(o) : 0;
    }

    /// @notice What the market owes or must burn: every free balance, every live escrow, the burn backlog.
    /// @return the sum (`held()` equals it)
    function totalOwed() external view returns (uint256) {
        return totalFree + totalEscrow + totalBurned;
    }

    /// @notice What the market holds of the payment asset.
    /// @return the balance
    function held() external view returns (uint256) {
        return _held();
    }

    /// @notice The EIP-712 domain separator intents are signed under.
    /// @return the separator
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
