// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {AssetHolder} from "./lib/AssetHolder.sol";

/// @title ProviderRegistry: who may serve leases, what they offer, and the stake they put at risk.
/// @notice A provider registers its hardware descriptor digest, its network domain, its prices per
/// device class and a metadata reference, with a stake of at least `minStake`. Only the market
/// counts live leases and slashes (for a reason it records); a provider with a live lease cannot
/// finish unbonding, and can still be slashed while unbonding.
///
/// Status machine:  None -> Active <-> Paused;  Active|Paused -> Unbonding -> Exited.
///
/// Roles: DEFAULT_ADMIN_ROLE and OPERATOR_ROLE (`setMinStake`) belong to the deployment's timelock, so
/// a change reaches providers only after its delay; the deployer binds the market once (`setMarket`),
/// which no role can redo. Stake is credited as it arrives (a fee-on-transfer token stakes less).
///
/// Accounting identity (checked by the tests after every step):
///     held asset == totalStaked + totalReleased
/// where totalReleased is stake of exited providers not yet withdrawn.
contract ProviderRegistry is AccessControl, ReentrancyGuard, AssetHolder {
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");

    enum Status { None, Active, Paused, Unbonding, Exited }
    enum SlashReason { MissedAcceptance, FailureMidLease, LostDispute }

    uint8 public constant DEVICE_CLASSES = 4; // CPU, GPU, NPU, TPU (codes 1..4 map to index 0..3)
    uint256 public constant MAX_MIN_STAKE = 1_000_000 ether;

    struct Provider {
        Status status;
        uint32 domain;
        uint32 liveLeases;
        uint64 unbondAt;
        uint256 stake;
        bytes32 hardware;
        bytes32 metadata;
        uint256[4] prices; // asset units per compute-unit-hour, per device class
    }

    error AlreadyRegistered(address provider);
    error NotRegistered(address provider);
    error WrongStatus(address provider, Status actual);
    error StakeTooLow(uint256 stake, uint256 minimum);
    error StillBonded(address provider, uint64 unbondAt);
    error LiveLeases(address provider, uint32 count);
    error NothingToWithdraw(address account);
    error NotMarket(address caller);
    error MarketAlreadySet(address market);
    error SettingOutOfBounds(bytes32 name, uint256 value, uint256 min, uint256 max);
    error BadDeviceClass(uint8 deviceClass);
    error ZeroAddress(bytes32 what);
    error NotBinder(address caller);

    event Registered(address indexed provider, bytes32 hardware, uint32 domain, bytes32 metadata,
        uint256[4] prices, uint256 stake);
    event Updated(address indexed provider, bytes32 hardware, uint32 domain, bytes32 metadata, uint256[4] prices);
    event StakeAdded(address indexed provider, uint256 amount, uint256 stake);
    event ProviderPaused(address indexed provider);
    event ProviderResumed(address indexed provider);
    event UnbondingStarted(address indexed provider, uint64 unbondAt);
    event ProviderExited(address indexed provider, uint256 released);
    event Withdrawn(address indexed account, uint256 amount);
    event Slashed(address indexed provider, uint256 indexed order, SlashReason reason, uint256 amount, uint256 stake);
    event LeaseCountChanged(address indexed provider, uint32 liveLeases);
    event MarketSet(address market);
    event SettingChanged(bytes32 indexed name, uint256 oldValue, uint256 newValue);

    uint64 public immutable unbondingPeriod;
    /// @notice The deployer: the one account that may bind the market, once.
    address public immutable binder;
    uint256 public minStake;
    address public market;
    uint256 public totalStaked;
    uint256 public totalReleased;

    mapping(address => Provider) private _providers;
    mapping(address => uint256) public released;

    modifier onlyMarket() {
        if (msg.sender != market) revert NotMarket(msg.sender);
        _;
    }

    /// @param asset_ the payment asset (address(0) for ETH)
    /// @param admin who grants roles and changes `minStake`: a timelock on any real network
    /// @param minStake_ the least stake that makes a provider eligible
    /// @param unbondingPeriod_ seconds between `beginUnbond` and `finishUnbond`
    constructor(address asset_, address admin, uint256 minStake_, uint64 unbondingPeriod_) AssetHolder(asset_) {
        if (admin == address(0)) revert ZeroAddress("admin");
        if (minStake_ > MAX_MIN_STAKE) revert SettingOutOfBounds("minStake", minStake_, 0, MAX_MIN_STAKE);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, admin);
        binder = msg.sender;
        minStake = minStake_;
        unbondingPeriod = unbondingPeriod_;
    }

    // ------------------------------------------------------------------ operator

    /// @notice Binds the market contract (once, by the deployer): the only caller of slash and the lease counters.
    /// @param market_ the market
    /// @dev Emits `MarketSet`.
    function setMarket(address market_) external {
        if (msg.sender != binder) revert NotBinder(msg.sender);
        if (market_ == address(0)) revert ZeroAddress("market");
        if (market != address(0)) revert MarketAlreadySet(market);
        market = market_;
        emit MarketSet(market_);
    }

    /// @notice The least stake that makes a provider eligible (through the timelock).
    /// @param value the new minimum, at most MAX_MIN_STAKE
    /// @dev Emits `SettingChanged("minStake", old, value)`.
    function setMinStake(uint256 value) external onlyRole(OPERATOR_ROLE) {
        if (value > MAX_MIN_STAKE) revert SettingOutOfBounds("minStake", value, 0, MAX_MIN_STAKE);
        emit SettingChanged("minStake", minStake, value);
        minStake = value;
    }

    // ------------------------------------------------------------------ providers

    /// @notice Registers the caller as a provider with a stake of what arrives of `amount`.
    /// @param hardware the digest of its hardware descriptor (what its Compute LSAs must hash to)
    /// @param domain its network domain
    /// @param metadata a reference to more about it
    /// @param prices its ask per device class (CPU, GPU, NPU, TPU), per unit-hour
    /// @param amount the stake to take (ETH: send exactly this); what arrives must be at least minStake
    /// @dev Emits `Registered`.
    function register(bytes32 hardware, uint32 domain, bytes32 metadata, uint256[4] calldata prices, uint256 amount)
        external payable nonReentrant
    {
        Provider storage p = _providers[msg.sender];
        if (p.status != Status.None) revert AlreadyRegistered(msg.sender);
        if (amount < minStake) revert StakeTooLow(amount, minStake);
        amount = _pullIn(msg.sender, amount);
        if (amount < minStake) revert StakeTooLow(amount, minStake);
        p.status = Status.Active;
        p.hardware = hardware;
        p.domain = domain;
        p.metadata = metadata;
        p.prices = prices;
        p.stake = amount;
        totalStaked += amount;
        emit Registered(msg.sender, hardware, domain, metadata, prices, amount);
    }

    /// @notice Changes the caller's hardware digest, domain, metadata and asks (live leases keep their price).
    /// @param hardware see `register`
    /// @param domain see `register`
    /// @param metadata see `register`
    /// @param prices see `register`
    /// @dev Emits `Updated`.
    function update(bytes32 hardware, uint32 domain, bytes32 metadata, uint256[4] calldata prices) external {
        Provider storage p = _providers[msg.sender];
        if (p.status != Status.Active && p.status != Status.Paused) revert WrongStatus(msg.sender, p.status);
        p.hardware = hardware;
        p.domain = domain;
        p.metadata = metadata;
        p.prices = prices;
        emit Updated(msg.sender, hardware, domain, metadata, prices);
    }

    /// @notice Adds what arrives of `amount` to the caller's stake.
    /// @param amount the stake to add (ETH: send exactly this)
    /// @dev Emits `StakeAdded`.
    function topUp(uint256 amount) external payable nonReentrant {
        Provider storage p = _providers[msg.sender];
        if (p.status == Status.None || p.status == Status.Exited) revert WrongStatus(msg.sender, p.status);
        amount = _pullIn(msg.sender, amount);
        p.stake += amount;
        totalStaked += amount;
        emit StakeAdded(msg.sender, amount, p.stake);
    }

    /// @notice The caller takes no new leases until `resume` (live ones run on). Emits `ProviderPaused`.
    function pause() external {
        Provider storage p = _providers[msg.sender];
        if (p.status != Status.Active) revert WrongStatus(msg.sender, p.status);
        p.status = Status.Paused;
        emit ProviderPaused(msg.sender);
    }

    /// @notice Lifts the caller's `pause`. Emits `ProviderResumed`.
    function resume() external {
        Provider storage p = _providers[msg.sender];
        if (p.status != Status.Paused) revert WrongStatus(msg.sender, p.status);
        p.status = Status.Active;
        emit ProviderResumed(msg.sender);
    }

    /// @notice Starts the unbonding period; the caller takes no new leases. Emits `UnbondingStarted`.
    function beginUnbond() external {
        Provider storage p = _providers[msg.sender];
        if (p.status != Status.Active && p.status != Status.Paused) revert WrongStatus(msg.sender, p.status);
        p.status = Status.Unbonding;
        p.unbondAt = uint64(block.timestamp) + unbondingPeriod;
        emit UnbondingStarted(msg.sender, p.unbondAt);
    }

    /// @notice Ends unbonding: the remaining stake becomes withdrawable. Not while a lease is live.
    /// @dev Emits `ProviderExited`.
    function finishUnbond() external {
        Provider storage p = _providers[msg.sender];
        if (p.status != Status.Unbonding) revert WrongStatus(msg.sender, p.status);
        if (block.timestamp < p.unbondAt) revert StillBonded(msg.sender, p.unbondAt);
        if (p.liveLeases != 0) revert LiveLeases(msg.sender, p.liveLeases);
        uint256 amount = p.stake;
        p.stake = 0;
        p.status = Status.Exited;
        totalStaked -= amount;
        totalReleased += amount;
        released[msg.sender] += amount;
        emit ProviderExited(msg.sender, amount);
    }

    /// @notice Pays out the caller's released stake. Emits `Withdrawn`.
    function withdraw() external nonReentrant {
        uint256 amount = released[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        released[msg.sender] = 0;
        totalReleased -= amount;
        emit Withdrawn(msg.sender, amount);
        _payOut(msg.sender, amount);
    }

    // ------------------------------------------------------------------ market hooks

    /// @notice The market counts a lease `who` now holds. Emits `LeaseCountChanged`.
    /// @param who the provider
    function leaseStarted(address who) external onlyMarket {
        Provider storage p = _providers[who];
        p.liveLeases += 1;
        emit LeaseCountChanged(who, p.liveLeases);
    }

    /// @notice The market counts a lease `who` no longer holds. Emits `LeaseCountChanged`.
    /// @param who the provider
    function leaseEnded(address who) external onlyMarket {
        Provider storage p = _providers[who];
        p.liveLeases -= 1;
        emit LeaseCountChanged(who, p.liveLeases);
    }

    /// @notice Takes up to `amount` of `provider`'s stake and sends it to the market, which credits
    /// the wronged party (up to its loss) and burns the rest. Returns what was taken (the stake may be smaller).
    /// @param who the provider
    /// @param amount the most to take
    /// @param reason why (recorded in the event)
    /// @param order the order it concerns
    /// @return taken what was taken
    /// @dev Emits `Slashed`.
    function slash(address who, uint256 amount, SlashReason reason, uint256 order)
        external onlyMarket nonReentrant returns (uint256 taken)
    {
        Provider storage p = _providers[who];
        if (p.status == Status.None) revert NotRegistered(who);
        taken = amount < p.stake ? amount : p.stake;
        p.stake -= taken;
        totalStaked -= taken;
        emit Slashed(who, order, reason, taken, p.stake);
        if (taken != 0) _payOut(market, taken);
    }

    // ------------------------------------------------------------------ views

    /// @notice A provider's record.
    /// @param who the provider
    /// @return the record
    function provider(address who) external view returns (Provider memory) {
        return _providers[who];
    }

    /// @notice A provider's status.
    /// @param who the provider
    /// @return its status
    function statusOf(address who) external view returns (Status) {
        return _providers[who].status;
    }

    /// @notice A provider's stake.
    /// @param who the provider
    /// @return its stake
    function stakeOf(address who) external view returns (uint256) {
        return _providers[who].stake;
    }

    /// @notice A provider's ask for a device class (1 CPU .. 4 TPU), per unit-hour.
    /// @param who the provider
    /// @param deviceClass the class
    /// @return the ask
    function priceOf(address who, uint8 deviceClass) external view returns (uint256) {
        if (deviceClass == 0 || deviceClass > DEVICE_CLASSES) revert BadDeviceClass(deviceClass);
        return _providers[who].prices[deviceClass - 1];
    }

    /// @notice True when the provider can take a new lease: active and staked at least minStake.
    /// @param who the provider
    /// @return eligible or not
    function isEligible(address who) public view returns (bool) {
        Provider storage p = _providers[who];
        return p.status == Status.Active && p.stake >= minStake;
    }

    /// @notice What the registry holds of the payment asset.
    /// @return the balance
    function held() external view returns (uint256) {
        return _held();
    }
}
