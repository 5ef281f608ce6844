"""The pure core: request and worker state machines, the matcher and the timers (no I/O)."""
