"""Errors of the peering transport, under the roots of ``marketplace.errors``.

    DecodeError (marketplace.errors)
    └── FrameError              bytes on a peering connection that are not a well-formed frame
        ├── FrameTooLarge       a length prefix above the frame limit (checked before buffering)
        └── UnknownMessage      a message type or protocol version this peer does not speak
    ConfigError (marketplace.errors)
    └── PeeringConfigError      a bad command line or origination file for a peer process

A ``FrameError`` closes the connection it came from: a byte stream that lost its framing
cannot be resynchronised. A bad LSA inside a good frame is not a ``FrameError``: the LSDB
rejects it with a reason, the peer counts and logs that reason, and the connection stays up.
"""

from __future__ import annotations

from marketplace.errors import ConfigError, DecodeError


class FrameError(DecodeError):
    code = "peering-frame"


class FrameTooLarge(FrameError):
    code = "peering-frame-too-large"


class UnknownMessage(FrameError):
    code = "peering-unknown-message"


class PeeringConfigError(ConfigError):
    code = "peering-config"
