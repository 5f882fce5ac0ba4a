"""A buyer's requirement: what one order needs from one provider node.

``Requirement`` is the demand side of ``NodeDescriptor``. It is built from user input
(``from_dict``: every fault raises ``InvalidRequirement`` naming the field), printed back
(``to_dict``), and identified by ``digest()``: keccak-256 over its canonical JSON, which
is what an order stores on chain, so anyone can check an order against its requirement.

Invariants:
- frozen and hashable; ``features`` is a lower-cased frozenset;
- ``count`` devices of ``device_class``, each with at least ``share_milli``/1000 of a
  device (fractional GPUs as the Alibaba trace's ``gpu_milli``); for CPUs a device is a
  logical CPU (see docs/resources.md);
- ``min_flops`` is per device at ``precision``, so it needs ``precision``;
- ``cpu_milli`` is host CPU in thousandths of a logical CPU that an accelerator job needs
  besides its accelerators (the trace's pods ask for both); a CPU job asks with ``count``;
- ``models`` (the device models the order accepts, e.g. the trace's ``gpu_spec``
  ``V100M16|V100M32``) is a frozenset of names; a device matches one when its model,
  normalized as the catalog normalizes names (``model_matches``), equals it or starts with
  it followed by a word (``A100`` accepts ``NVIDIA A100-SXM4-80GB``, never an ``A10``);
  empty means any model;
- ``to_dict()`` round-trips through ``from_dict`` and the digest is the same for equal
  requirements whatever order or spelling the input used. ``models`` appears in it only
  when given, so the digest of every requirement without it is what it was before it existed.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_utils import keccak

from marketplace.errors import ResourceError
from marketplace.resources.errors import InvalidRequirement
from marketplace.resources.model import DeviceClass, Precision

#: Longest lease a requirement may ask for: one year. Longer is a typo, not an order.
MAX_DURATION_S = 366 * 24 * 3600
#: Largest device count one order may ask of one node (a DGX SuperPOD rack is 32 x 8 GPUs).
MAX_COUNT = 4096
#: Most device models one order may accept, and the longest name of one.
MAX_MODELS = 32
MAX_MODEL_NAME = 64


@dataclass(frozen=True, slots=True)
class Requirement:
    """What an order needs of a node. See the module docstring for the meaning of each field."""

    device_class: DeviceClass
    count: int = 1
    share_milli: int = 1000
    min_memory_mib: int | None = None
    min_system_memory_mib: int | None = None
    precision: Precision | None = None
    min_flops: float | None = None
    features: frozenset[str] = frozenset()
    max_latency_ms: float | None = None
    max_price: int | None = None
    domain: int | None = None
    duration_s: int = 3600
    cpu_milli: int = 0
    models: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "device_class", DeviceClass.parse(self.device_class))
            if self.precision is not None:
                object.__setattr__(self, "precision", Precision.parse(self.precision))
        except ResourceError as exc:
            raise InvalidRequirement(exc.message, field=exc.fields.get("field"), hint=exc.hint) from None
        if isinstance(self.features, str):
            raise InvalidRequirement("features must be a list of names, not one string", field="features")
        object.__setattr__(self, "features", frozenset(str(f).strip().lower() for f in self.features))
        _int(self.count, "count", 1, MAX_COUNT)
        _int(self.share_milli, "share_milli", 1, 1000)
        _int(self.duration_s, "duration_s", 1, MAX_DURATION_S)
        _int(self.cpu_milli, "cpu_milli", 0, MAX_COUNT * 1000)
        for name in ("min_memory_mib", "min_system_memory_mib", "max_price", "domain"):
            value = getattr(self, name)
            if value is not None:
                _int(value, name, 0, None)
        for name in ("min_flops", "max_latency_ms"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _real(value, name))
        if self.min_flops is not None and self.precision is None:
            raise InvalidRequirement(
                "min_flops needs a precision to be measured at", field="precision",
                hint="add precision, e.g. fp16",
            )
        if self.cpu_milli and self.device_class == DeviceClass.CPU:
            raise InvalidRequirement(
                "cpu_milli is for accelerator jobs; a CPU job asks for CPUs with count",
                field="cpu_milli",
            )
        if any(not f for f in self.features):
            raise InvalidRequirement("empty feature name", field="features")
        object.__setattr__(self, "models", _models(self.models))

    @property
    def demand_milli(self) -> int:
        """Total capacity asked for, in thousandths of a device."""
        return self.count * self.share_milli

    # -- dict form -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-ready form: enum names in lower case, features sorted."""
        return {
            "device_class": self.device_class.name.lower(),
            "count": self.count,
            "share_milli": self.share_milli,
            "min_memory_mib": self.min_memory_mib,
            "min_system_memory_mib": self.min_system_memory_mib,
            "precision": None if self.precision is None else self.precision.name.lower(),
            "min_flops": self.min_flops,
            "features": sorted(self.features),
            "max_latency_ms": self.max_latency_ms,
            "max_price": self.max_price,
            "domain": self.domain,
            "duration_s": self.duration_s,
            "cpu_milli": self.cpu_milli,
            # only when given: requirements without models keep the digest they had before
            **({"models": sorted(self.models)} if self.models else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Requirement:
        """Build from user input; unknown keys and wrong types raise ``InvalidRequirement``."""
        if not isinstance(data, dict):
            raise InvalidRequirement(f"a requirement is an object, got {type(data).__name__}", field=None)
        for key in data:
            if key not in _FIELDS:
                close = difflib.get_close_matches(str(key), _FIELDS, n=1)
                raise InvalidRequirement(
                    f"unknown requirement field {key!r}", field=str(key),
                    hint=f"did you mean {close[0]!r}?" if close else f"fields are {', '.join(_FIELDS)}",
                )
        if "device_class" not in data:
            raise InvalidRequirement("device_class is required", field="device_class", hint="cpu, gpu, npu or tpu")
        kwargs = dict(data)
        features = kwargs.get("features", ())
        if features is None:
            kwargs["features"] = ()
        elif not isinstance(features, (list, tuple, set, frozenset)) or not all(
            isinstance(f, str) for f in features
        ):
            raise InvalidRequirement("features must be a list of strings", field="features")
        models = kwargs.get("models", ())
        if models is None:
            kwargs["models"] = ()
        elif not isinstance(models, (list, tuple, set, frozenset)):
            raise InvalidRequirement("models must be a list of device model names", field="models",
                                     hint='e.g. ["A100", "H100"]')
        return cls(**kwargs)

    def accepts_model(self, model: str) -> bool:
        """Whether a device of ``model`` is one this requirement accepts (any, without ``models``)."""
        return not self.models or model_matches(self.models, model)

    # -- identity ---------------------------------------------------------------

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()

    def digest(self) -> bytes:
        """keccak-256 of the canonical JSON: what an order stores on chain."""
        return keccak(self.canonical_bytes())


_FIELDS = tuple(Requirement.__dataclass_fields__)


def normalize_model(name: str) -> str:
    """A device model name compared as the catalog compares them: lower case, punctuation folded
    to single spaces, vendor words dropped (``"NVIDIA A100-SXM4-80GB"`` -> ``"a100 sxm4 80gb"``)."""
    # imported here: the catalog's tables are loaded only by code that compares models
    from marketplace.resources.catalog import normalize_model as catalog_normalize

    return catalog_normalize(name)


@lru_cache(maxsize=4096)
def _model_keys(models: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(normalize_model(m) for m in models))


@lru_cache(maxsize=65536)
def model_matches(models: frozenset[str], device_model: str) -> bool:
    """Whether ``device_model`` is one of ``models``: its normalized name equals one of theirs
    or starts with one followed by a space (a word boundary: ``A100`` takes ``A100 SXM4 80GB``,
    never ``A10`` nor ``A100X``)."""
    have = normalize_model(device_model)
    return any(have == want or have.startswith(want + " ") for want in _model_keys(models))


_MODEL_CHARS = re.compile(r"^[\w .+\-/()\[\]]+$")


def _models(value: Any) -> frozenset[str]:
    """``models`` checked: names (not one string), each a printable name of a model that the
    catalog's normalization does not reduce to nothing; at most ``MAX_MODELS``."""
    if isinstance(value, (str, bytes)):
        raise InvalidRequirement("models must be a list of device model names, not one string", field="models",
                                 hint=f'e.g. ["{value if isinstance(value, str) else "A100"}"]')
    try:
        names = list(value)
    except TypeError:
        raise InvalidRequirement(f"models must be a list of device model names, got {value!r}",
                                 field="models") from None
    if len(names) > MAX_MODELS:
        raise InvalidRequirement(f"models lists {len(names)} names, at most {MAX_MODELS}", field="models")
    out = set()
    for name in names:
        if not isinstance(name, str):
            raise InvalidRequirement(f"a device model is a name, got {name!r}", field="models")
        name = name.strip()
        if not name or len(name) > MAX_MODEL_NAME or not _MODEL_CHARS.match(name):
            raise InvalidRequirement(f"bad device model name {name!r}", field="models",
                                     hint=f"a model name is 1..{MAX_MODEL_NAME} letters, digits, spaces or -._+/()[]"
                                          ", e.g. A100, V100M32, Tesla T4; give one name per entry")
        if not normalize_model(name):
            raise InvalidRequirement(f"device model {name!r} names a vendor, not a model", field="models",
                                     hint="add the model, e.g. NVIDIA A100")
        out.add(name)
    return frozenset(out)


def _int(value: Any, name: str, low: int, high: int | None) -> None:
    # bool is an int in Python; True devices is a mistake, not 1 device.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequirement(f"{name} must be an integer, got {value!r}", field=name)
    if value < low or (high is not None and value > high):
        bound = f"within {low}..{high}" if high is not None else f"at least {low}"
        raise InvalidRequirement(f"{name} must be {bound}, got {value}", field=name)


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequirement(f"{name} must be a number, got {value!r}", field=name)
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise InvalidRequirement(f"{name} must be a finite number >= 0, got {value!r}", field=name)
    return value
