"""Real sshd host public keys, one of each type a board may report (made by ssh-keygen)."""

from __future__ import annotations

from typing import Final

ED25519: Final = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICek0B9yPyc+NRATG1Mp9S8UgsRnUCaIjzKHubG0OR/B"
ECDSA_256: Final = (
    "ecdsa-sha2-nistp256 "
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIdbB5Af+ujD2ehvpEA1AScVQh6F"
    "jVmg1WBSmsfv+w3gMil7fRh4KYW93htXlZB7ANTtdiE53ZejC+T9TiPn0Q4="
)
ECDSA_384: Final = (
    "ecdsa-sha2-nistp384 "
    "AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBIit3ls+waMvOyF+cdaf8LoeBC5a"
    "/xsxIiFR16CZE8FQCcfYKdZz+5GrJPJXtFZu9DelZHN7VhMXdmRaGRWKwWPUXAtyAPGZO0aiBIyZRxyK"
    "HuNFGWmailL9L51IVw/1dg=="
)
ECDSA_521: Final = (
    "ecdsa-sha2-nistp521 "
    "AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAFUiXebr+pxcJwVX2yLjl5nonHy"
    "hmeG4iaR9Q7ThTKSd5gXEoQF8XneFUW9RmH9oKZDcwUjvFRp2FK/30aujXvfqQD62b4kAuto1y3xqBhi"
    "1IQA26YfWRL3ifL46vTdftxis6t0bVjCK9c9nISQfsTS1JzZOJnxme+pvJyEv4lQFf1uYw=="
)
RSA_2048: Final = (
    "ssh-rsa "
    "AAAAB3NzaC1yc2EAAAADAQABAAABAQC5WmIWouSxN6gmsU09F7F/uKMbWUTUQqnIoNVCplL1x4k7Tn6D"
    "4twaDShYask84wiZ1eclaJLbMzCBG0WXAIYG6G4PzUE1SQT+JiSl35pd6tv8/Y+ASl3vg3F2opxrIT44"
    "mhpelJnnmni33AH2s2kMbk9N5Swia+KmPVr1tOxfxJJ+w3h7GPiEjSZAL+0AsAhT7Bb16scyZjdOuXZT"
    "DGbavqIW/DBpEBAfmRxED8u73mtbb6rVdpvCQkX9nTWhCa5yGUtz2DinXE1PpvByUuC2FMUzAWDMkKwi"
    "57l6DYivOr5JLrLxAddMNvTh9oqvvcSz3XO79Ac6fo+uKrHR82UD"
)

ALL: Final = (ED25519, ECDSA_256, ECDSA_384, ECDSA_521, RSA_2048)
# As a .pub file holds it: a comment after the key, a newline at the end.
ED25519_PUB: Final = f"{ED25519} root@board\n"
