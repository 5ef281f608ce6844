"""The tunnels: per job, a TCP port here whose connections reach the worker's sshd.

Owns the port range (``ports``) and its claim on the host (``claim``), the listeners
(``listeners.LinkTunnels``), the byte pump between a user's socket and the sshd's end on
the event loop (``pump``), the dial-back listener (``dialback``), and one connector per
``tunnel_mode`` value: ``dialback`` (``relayed``: the dryad dials back and a relay thread
splices; the default), ``link`` (through the dryad link), ``direct`` (dial the sshd from
here) and ``none`` (no tunnel: users dial the worker's own address). It implements
``service.interfaces.Tunnels``; it may import the domain, the errors, the store port and
the dryad link, never the service, the feed or the HTTP API.
"""
