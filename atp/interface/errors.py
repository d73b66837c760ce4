"""Errors of the exchange interface, each with the HTTP status code a binding answers.

ProtocolError (atp.errors)
+-- CommunicationError  a request or its reply was lost (timeout, broken connection); retry it
+-- InterfaceError      carries `status`
    +-- UnauthorizedError   401: no token or a bad one
    +-- ForbiddenError      403: acting for another party
    +-- NotFoundError       404: unknown id, or another party's offer
    +-- ConflictError       409: the offer's state does not allow the operation
"""

from __future__ import annotations

from atp.errors import ProtocolError

__all__ = [
    "CommunicationError",
    "ConflictError",
    "ForbiddenError",
    "InterfaceError",
    "NotFoundError",
    "UnauthorizedError",
]


class CommunicationError(ProtocolError):
    """A request to the receiver, or its reply, was lost; the caller may retry it.

    The one error a binding raises for lost communication (an HTTP timeout or broken
    connection, a broken MQTT session); the in-process binding never raises it. Every other
    error of a binding (409, 404, 422) is a refusal by the receiver and is not retried. A
    retried submission must carry the same idempotency key so that the receiver stores the
    offer once.
    """


class InterfaceError(ProtocolError):
    """A request the receiver refuses; `status` is the HTTP status code of the refusal."""

    status = 400


class UnauthorizedError(InterfaceError):
    """No token or a bad token."""

    status = 401


class ForbiddenError(InterfaceError):
    """The caller acts for a party it is not."""

    status = 403


class NotFoundError(InterfaceError):
    """No such offer for this caller (another party's offer also answers 404)."""

    status = 404


class ConflictError(InterfaceError):
    """The offer's state does not allow the operation (e.g. PUT after assignment)."""

    status = 409
