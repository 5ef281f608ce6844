"""Who may do what: owners change their own requests, admins anything."""

from __future__ import annotations

from coordinator.domain.model import Request, User
from coordinator.errors import Forbidden


def check_owner(user: User, req: Request) -> None:
    """:raises Forbidden: unless ``user`` owns ``req`` or is an admin."""
    if not user.admin and req.owner != user.name:
        raise Forbidden("only the owner of a request or an admin may do this")


def require_admin(user: User) -> None:
    """:raises Forbidden: unless ``user`` is an admin."""
    if not user.admin:
        raise Forbidden("only an admin may do this")
