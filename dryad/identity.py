"""The dryad's identity in its state directory: UUID, SSH key, enrolment, coordinator key."""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import asyncssh

from dryad.errors import ConfigError, HostKeyMismatch
from hardware.files import atomic_write

logger = logging.getLogger(__name__)

UUID_FILE: Final = "uuid"
KEY_FILE: Final = "identity_ed25519"
ENROLLED_FILE: Final = "enrolled"
HOST_KEY_FILE: Final = "coordinator_host_key"


@dataclass(frozen=True)
class Identity:
    """Who this board is to the coordinator; created on first start, then kept.

    Everything lives in ``state_dir`` (mode 0700), each file mode 0600 and written
    atomically, so a power cut never leaves half a key behind.
    """

    uuid: str
    key: asyncssh.SSHKey = field(repr=False)
    state_dir: Path

    @classmethod
    def load(cls, state_dir: Path) -> Identity:
        """Read the identity from ``state_dir``, generating what is missing.

        :raises ConfigError: the directory is unusable or holds a damaged file.
        """
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            state_dir.chmod(0o700)  # a packaged directory may come with looser modes
        except OSError as exc:
            raise ConfigError(f"state_dir: cannot use {state_dir}: {exc}") from exc
        try:
            key = _load_key(state_dir)
            value = _load_uuid(state_dir)
        except OSError as exc:
            raise ConfigError(f"state_dir: cannot use {state_dir}: {exc}") from exc
        return cls(value, key, state_dir)

    @property
    def public_key(self) -> str:
        """The public key in OpenSSH format (what an admin compares on the coordinator)."""
        return str(self.key.export_public_key().decode().strip())

    @property
    def fingerprint(self) -> str:
        return str(self.key.get_fingerprint())

    @property
    def enrolled(self) -> bool:
        return (self.state_dir / ENROLLED_FILE).exists()

    def mark_enrolled(self, coordinator: str) -> None:
        atomic_write(self.state_dir / ENROLLED_FILE, (coordinator + "\n").encode())

    def forget_enrolment(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / ENROLLED_FILE).unlink()

    def trusted_host_key(self) -> asyncssh.SSHKey | None:
        try:
            return asyncssh.read_public_key(self.state_dir / HOST_KEY_FILE)
        except FileNotFoundError:
            return None
        except (OSError, asyncssh.KeyImportError) as exc:
            # A damaged file must not silently become "trust whatever answers next".
            raise HostKeyMismatch(
                f"cannot read the trusted coordinator key {self.state_dir / HOST_KEY_FILE}: "
                f"{exc}; delete it to trust the coordinator's key anew"
            ) from exc

    def verify_host_key(self, key: asyncssh.SSHKey, coordinator: str) -> None:
        """Trust ``key`` on first use; afterwards accept only that key, from every
        coordinator: a farm's coordinators share one link host key, so that a new address
        never gets trusted on its own (docs/failover.md §host keys).

        :raises HostKeyMismatch: the coordinator presented another key.
        """
        trusted = self.trusted_host_key()
        if trusted is None:
            atomic_write(self.state_dir / HOST_KEY_FILE, key.export_public_key())
            logger.info("trusting coordinator %s host key %s", coordinator, key.get_fingerprint())
            return
        if trusted.public_data != key.public_data:
            raise HostKeyMismatch(
                f"coordinator {coordinator} host key changed: trusted "
                f"{trusted.get_fingerprint()}, offered {key.get_fingerprint()}; every "
                "coordinator of a farm must serve the same link host key; if the farm's key "
                f"was replaced, delete {self.state_dir / HOST_KEY_FILE}"
            )


def _load_key(state_dir: Path) -> asyncssh.SSHKey:
    path = state_dir / KEY_FILE
    try:
        return asyncssh.read_private_key(path)
    except FileNotFoundError:
        pass
    except asyncssh.KeyImportError as exc:
        raise ConfigError(f"state_dir: {path} holds no usable key: {exc}") from exc
    key = asyncssh.generate_private_key("ssh-ed25519")
    atomic_write(path, key.export_private_key())
    # A new key is unknown to the coordinator, whatever an old marker says.
    with contextlib.suppress(FileNotFoundError):
        (state_dir / ENROLLED_FILE).unlink()
    logger.info("generated SSH identity %s", key.get_fingerprint())
    return key


def _load_uuid(state_dir: Path) -> str:
    path = state_dir / UUID_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = str(uuid.uuid4())
        atomic_write(path, (text + "\n").encode())
        logger.info("generated worker UUID %s", text)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ConfigError(f"state_dir: {path} holds no UUID: {text[:40]!r}") from None
