// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IComputeMarket: the market's types, errors and events, the auditor's vocabulary.
/// @notice Every order moves through one explicit state machine; each transition is one function and
/// emits one event naming the order (the auditor's history):
///
///   Open --assignBatch--> Assigned --accept--> Running --complete--> Completed --settle--> Settled
///   Open|Assigned --cancel (buyer)--> Cancelled
///   Assigned --timeoutAcceptance (anyone, after the deadline)--> Assigned (next backup) | Refunded
///   Running --fail (orchestrator)--> Assigned (next backup, remaining time) | Refunded
///   Running --expire (anyone, after the lease's end plus a grace period)--> Refunded
///   Completed --dispute (buyer) | fail (orchestrator, racing a completion)--> Disputed
///   Disputed --resolve (the order's arbiter)--> Resolved
///   Disputed --lapse (anyone, after the arbitration deadline)--> Resolved (as if settled)
///
/// Settled, Cancelled, Refunded and Resolved are terminal. The terms an order runs under (fee, windows,
/// slash rates, arbiter) are the `Settings` version in force when it was placed; a later change of
/// settings never reaches an order already placed.
interface IComputeMarket {
    enum State { None, Open, Assigned, Running, Completed, Settled, Cancelled, Refunded, Disputed, Resolved }

    /// @notice Why an assignment of a batch cannot hold (`AssignmentSkipped`).
    enum Reason { None, OrderNotOpen, ZeroProvider, TooManyBackups, ZeroBackup, ProviderIneligible,
        PriceAboveCeiling, PriceBelowAsk }

    /// @notice Which field of an intent is invalid (`InvalidOrder`).
    enum OrderField { Units, Duration, DeviceClass, MaxPrice }

    /// @notice Which setting is out of its bounds (`SettingOutOfBounds`), in `Settings` order.
    enum Setting { FeeBps, MissSlashBps, FailSlashBps, DisputeSlashBps, AcceptWindow, DisputeWindow,
        ArbitrationWindow, RunGrace, Arbiter }

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

    /// @notice The market's terms. Each change is a new version; an order keeps the version it was placed
    /// under. Bounds are enforced by `setSettings` (see the MIN_/MAX_ constants).
    struct Settings {
        uint16 feeBps;            // operator's fee on every payment to a provider
        uint16 missSlashBps;      // stake slashed for a missed acceptance
        uint16 failSlashBps;      // stake slashed for a failure mid-lease (x (1 + tier), capped)
        uint16 disputeSlashBps;   // the most the arbiter may slash in one dispute
        uint32 acceptWindow;      // seconds a provider has to accept an assignment
        uint32 disputeWindow;     // seconds the buyer has to dispute a completion
        uint32 arbitrationWindow; // seconds the arbiter has to resolve a dispute before anyone may lapse it
        uint32 runGrace;          // seconds after a lease's end before anyone may expire it
        address arbiter;          // who resolves this order's disputes
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
        uint32 terms;         // the Settings version the order was placed under
        uint64 served;        // seconds already paid for (segments before a failover)
        uint64 acceptDeadline;
        uint64 startedAt;
        uint64 completedAt;
        uint64 disputedAt;
        uint128 paid;         // paid to providers so far, fees included: what the buyer stands to lose
        uint128 compensated;  // slashed stake credited to the buyer so far (never above `paid`)
        uint256 maxPrice;
        uint256 price;        // per unit-hour, of the provider holding the lease
        uint256 escrow;
        uint256 usage;        // unit-seconds metered in the last segment
        bytes32 requirement;
        bytes32 digest;
        bytes32 result;
        address[] backups;
    }

    /// @dev `blockNumber != 0` marks a recorded batch; `orders` is how many it assigned (skips excluded).
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
    error NotArbiter(uint256 order, address caller);
    error NotAdmin(address caller);
    error NotOperator(address caller);
    error NotOrchestrator(address caller);
    error InvalidOrder(OrderField field);
    error IntentExpired(uint64 deadline);
    error BadNonce(address buyer, uint256 expected, uint256 got);
    error NonceNotAhead(address buyer, uint256 current, uint256 requested);
    /// @notice The signature does not verify for `buyer` (an EOA's key or an ERC-1271 wallet).
    error BadSignature(address buyer);
    error NotBuyer(address buyer, address caller);
    error InsufficientDeposit(address buyer, uint256 needed, uint256 available);
    error AcceptanceExpired(uint256 order, uint64 deadline);
    error AcceptanceNotExpired(uint256 order, uint64 deadline);
    error UsageTooHigh(uint256 order, uint256 usage, uint256 maximum);
    error DisputeWindowOpen(uint256 order, uint64 until);
    error DisputeWindowClosed(uint256 order, uint64 closedAt);
    error LeaseNotOver(uint256 order, uint64 until);
    error ArbitrationOpen(uint256 order, uint64 until);
    error SplitTooLarge(uint256 order, uint256 amount, uint256 maximum);
    error SlashTooLarge(uint256 order, uint256 amount, uint256 maximum);
    error TiersDisabled();
    error InsufficientBalance(address account, uint256 requested, uint256 available);
    error LengthMismatch();
    error BatchExists(bytes32 batchId);
    error ZeroBatchId();
    error SettingOutOfBounds(Setting setting, uint256 value, uint256 min, uint256 max);
    error UnexpectedEther(address from);
    error ZeroAddress();
    error AssetMismatch(address market, address registry);
    error RegistryNotBound(address registryMarket);

    event OrchestratorSet(address indexed orchestrator, bool allowed);
    event Deposited(address indexed account, uint256 amount, uint256 balance);
    event Withdrawn(address indexed account, uint256 amount, uint256 balance);
    event NoncesInvalidated(address indexed buyer, uint256 nonce);
    event OrderPlaced(uint256 indexed order, address indexed buyer, bytes32 digest, bytes32 requirement,
        uint8 deviceClass, uint32 units, uint64 duration, uint256 maxPrice, uint8 tier, uint256 escrow, uint32 terms);
    /// @notice `batchId` is the matching batch that decided the assignment.
    event Assigned(uint256 indexed order, address indexed provider, bytes32 indexed batchId, uint256 price,
        address[] backups, uint64 acceptDeadline);
    /// @notice An assignment of a batch that no longer held when the batch landed; the order is unchanged.
    event AssignmentSkipped(uint256 indexed order, address indexed provider, bytes32 indexed batchId, Reason reason);
    event Accepted(uint256 indexed order, address indexed provider, uint64 startedAt);
    event Completed(uint256 indexed order, address indexed provider, bytes32 result, uint256 usage);
    event Settled(uint256 indexed order, address indexed provider, uint256 paid, uint256 fee, uint256 refund);
    event Cancelled(uint256 indexed order, address indexed buyer, uint256 refund);
    /// @notice `next` is the backup now holding the lease at `price` (or 0: the buyer was refunded `refund`);
    /// `compensation` is the late provider's slashed stake credited to the buyer (the rest was burned).
    event AcceptanceTimedOut(uint256 indexed order, address indexed late, address indexed next, uint256 compensation,
        uint256 refund, uint64 acceptDeadline, uint256 price);
    /// @notice Pro-rata pay for `served` seconds, then the lease moves to `next` at `price` or the buyer is refunded.
    event OrderFailed(uint256 indexed order, address indexed provider, address indexed next, uint64 served,
        uint256 paid, uint256 fee, uint256 compensation, uint256 refund, uint64 acceptDeadline, uint256 price);
    /// @notice Running past its end plus the grace period with no completion: no pay for the segment.
    event Expired(uint256 indexed order, address indexed provider, uint256 compensation, uint256 refund);
    /// @notice `by` is the buyer, or the orchestrator whose failure report raced the provider's completion.
    event Disputed(uint256 indexed order, address indexed by);
    event Resolved(uint256 indexed order, address indexed provider, uint256 paid, uint256 fee, uint256 refund,
        uint256 compensation);
    /// @notice The arbiter did not act in time: settled as if undisputed (metered pay, no slash).
    event DisputeLapsed(uint256 indexed order, address indexed provider, uint256 paid, uint256 fee, uint256 refund);
    /// @notice Slashed stake beyond the buyer's loss, set aside for the burn address (see `burn`).
    event Burned(uint256 indexed order, address indexed provider, uint256 amount);
    /// @notice The burn backlog sent to the burn address.
    event BurnFlushed(uint256 amount);
    event BatchCommitted(bytes32 indexed batchId, bytes32 inputsHash, bytes32 decisionsHash, uint256 orders);
    event SettingsChanged(uint32 indexed version, uint16 feeBps, uint16 missSlashBps, uint16 failSlashBps,
        uint16 disputeSlashBps, uint32 acceptWindow, uint32 disputeWindow, uint32 arbitrationWindow, uint32 runGrace,
        address arbiter);
}
