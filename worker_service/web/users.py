"""Named dashboard users: Argon2id password hashes (argon2-cffi) and two roles.

``viewer`` reads everything and changes nothing; ``operator`` may also requeue, delete, pause, resend.
The single WEB_USER / WEB_PASSWORD of the settings stays a bootstrap operator, so a fresh install can
log in before anyone was added (``worker users add NAME --role viewer|operator``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from worker_service.database import DashboardUser, session

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
#: for named users and WEB_PASSWORD alike (refused at `worker users add` / at `worker web`'s start)
MIN_PASSWORD_LENGTH = 12
_HASHER = PasswordHasher()
# verified against when the user does not exist, so an unknown name costs the same time (and memory) as a wrong
# password; a literal with the hasher's parameters, so importing this module hashes nothing (64 MiB at start-up)
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$IPnDKyHg3rhjmcQp+wCNmQ$yOL+0moWJbFHngxLtQI3KlkVIIMvJ8DpD3N2tnGuits"
)


def add_user(name: str, password: str, role: Role) -> bool:
    """Create or replace ``name``; True if it is new."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name or len(name) > 100 or not name.isprintable() or ":" in name:
        raise ValueError("a user name is 1-100 printable characters, without ':'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    with session(transaction=True):
        existing = DashboardUser.get_or_none(DashboardUser.name == name)
        # the same password again keeps its hash: only a real password change ends the user's open sessions
        password_hash = (
            existing.password_hash
            if existing and _matches(existing.password_hash, password)
            else _HASHER.hash(password)
        )
        (
            DashboardUser.insert(name=name, password_hash=password_hash, role=role)
            .on_conflict(
                conflict_target=[DashboardUser.name],
                update={DashboardUser.password_hash: password_hash, DashboardUser.role: role},
            )
            .execute()
        )
    return existing is None


def _matches(password_hash: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def remove_user(name: str) -> bool:
    with session(transaction=True):
        return bool(DashboardUser.delete().where(DashboardUser.name == name).execute())


def list_users() -> list[dict[str, str]]:
    from worker_service.database.models import iso

    with session():
        return [
            {"name": u.name, "role": u.role, "created_at": iso(u.created_at) or ""}
            for u in DashboardUser.select().order_by(DashboardUser.name)
        ]


def role_of(name: str) -> Role | None:
    """A named user's role, or None if there is no such user."""
    with session():
        user = DashboardUser.get_or_none(DashboardUser.name == name)
    return cast(Role, user.role) if user is not None and user.role in ROLES else None


@dataclass(frozen=True)
class Account:
    role: Role
    password_hash: str  # changes with every password change (`worker users add`)


def account_of(name: str) -> Account | None:
    """A named user's role and password hash in one read (what each session request checks), or None."""
    with session():
        user = DashboardUser.get_or_none(DashboardUser.name == name)
    if user is None or user.role not in ROLES:
        return None
    return Account(cast(Role, user.role), str(user.password_hash))


def verify(name: str, password: str) -> Role | None:
    """The user's role when the password is right, else None (same work whether the user exists or not)."""
    with session():
        user = DashboardUser.get_or_none(DashboardUser.name == name)
    if not _matches(user.password_hash if user else _DUMMY_HASH, password):
        return None
    return cast(Role, user.role) if user is not None and user.role in ROLES else None
