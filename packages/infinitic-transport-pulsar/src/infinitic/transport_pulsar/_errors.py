"""Errors of the Pulsar transport."""

from __future__ import annotations

from infinitic.exceptions import InfiniticError


class PulsarTransportError(InfiniticError):
    """The broker refused or failed an operation (publish, subscribe, acknowledge)."""


class PulsarAdminError(PulsarTransportError):
    """The Pulsar admin REST API refused a request or could not be reached."""
