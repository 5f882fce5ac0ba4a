"""Content-addressed artifacts: what buyers run and feed their runs, and what providers' runs leave.

    kinds   Kind (wasm, oci, data), the size limit of each, and the check each gets on upload
    store   ArtifactStore: blobs named by their sha256, never half-written, quotas, expiry
    auth    the signed upload authorization (quotas are per account)
    oci     an OCI archive from a root file system (no registry, no podman)

The engine keeps one store (``<state>/artifacts``) and serves it at ``/v1/artifacts``;
docs/api.md and docs/buyer.md describe the routes and the commands.
"""

from marketplace.artifacts.auth import UploadClaim, sign_upload, verify_upload
from marketplace.artifacts.kinds import DIGEST, MAX_BYTES, ArtifactRejected, Kind, parse_kind
from marketplace.artifacts.store import ArtifactInfo, ArtifactStore, StoreLimits, Upload, digest_hex

__all__ = ["DIGEST", "MAX_BYTES", "ArtifactInfo", "ArtifactRejected", "ArtifactStore", "Kind", "StoreLimits",
           "Upload", "UploadClaim", "digest_hex", "parse_kind", "sign_upload", "verify_upload"]
