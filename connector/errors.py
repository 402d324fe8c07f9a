"""Exceptions shared across the package.

Every error a user can cause derives from :class:`ConnectorError`, so the CLI and the Airbyte
entry points can turn it into a one-line message (or a TRACE message) instead of a traceback.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class of every error caused by input, configuration or the environment."""


class ConfigError(ConnectorError, ValueError):
    """A configuration value is missing or invalid; the message names the field."""


class DesFormatError(ConnectorError, ValueError):
    """A DES container is malformed; the message names the container and what is wrong."""


class MemberNameError(ConnectorError, ValueError):
    """A member name is not allowed in a DES container (or would escape a target folder)."""
