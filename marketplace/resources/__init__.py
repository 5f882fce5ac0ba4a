"""CONA's resource model: heterogeneous compute in one vocabulary, normalized, and fitted.

    model        DeviceClass, Precision, DeviceCapability, NodeDescriptor (digest on chain)
    units        CATS levels: l0_metrics, l1_metrics -> L1, l2_score; compute_units, node_units
    requirement  Requirement (from_dict / to_dict / digest on chain)
    fit          fit(req, node, free=..., price=...) -> Fit(ok, reasons, score, devices)
    alibaba      the Alibaba GPU trace's nodes and pods as descriptors and requirements
    catalog      datasheet peak figures per device model
    errors       InvalidRequirement, FreeCapacityError

Pure: no chain, network or process imports (an import-linter contract holds it).
See docs/resources.md.
"""

from marketplace.resources.fit import Fit, NodeView, Reason, fit, view_of
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor, Precision
from marketplace.resources.requirement import Requirement
from marketplace.resources.units import L1, REFERENCES, compute_units, l0_metrics, l1_metrics, l2_score, node_units

__all__ = [
    "L1", "REFERENCES", "DeviceCapability", "DeviceClass", "Fit", "NodeDescriptor", "NodeView", "Precision",
    "Reason", "Requirement", "compute_units", "fit", "l0_metrics", "l1_metrics", "l2_score", "node_units",
    "view_of",
]
