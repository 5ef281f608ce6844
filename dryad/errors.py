"""The dryad's exception tree; foreign errors are translated at one boundary.

::

    DryadError
    ├── ConfigError (ValueError)          the configuration file is unusable
    ├── JobUserError (RuntimeError)       creating or removing the job user failed
    ├── HealthcheckFailed                 a healthcheck could not run at all
    └── LinkError (ConnectionError)       the link to the coordinator failed
        ├── EnrolmentRefused              the coordinator refused the enrolment token
        │   └── NoEnrolmentToken          unknown to the coordinator, and no token to offer
        └── HostKeyMismatch               the coordinator's host key changed (TOFU)
"""

from __future__ import annotations


class DryadError(Exception):
    """Root of every error the dryad raises on purpose."""


class ConfigError(DryadError, ValueError):
    """The configuration is missing, malformed, or names an unknown key."""


class JobUserError(DryadError, RuntimeError):
    """The job user could not be prepared or released; the message says why."""


class HealthcheckFailed(DryadError):
    """A healthcheck could not be run (not: it ran and reported a failure)."""


class LinkError(DryadError, ConnectionError):
    """The link to the coordinator could not be established or was lost."""


class EnrolmentRefused(LinkError):
    """The coordinator refused our enrolment token (invalid or expired)."""


class NoEnrolmentToken(EnrolmentRefused):
    """The coordinator does not know our key and the configuration holds no token."""


class HostKeyMismatch(LinkError):
    """The coordinator presented a host key other than the one trusted on first use."""
