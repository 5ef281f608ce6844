"""The feed: what happened in the farm, told to whoever listens.

Owns the event broadcaster (``events``: stored transitions fanned out live, and
ephemeral panel events), webhook deliveries (``webhooks``), Prometheus metrics
(``metrics``) and the latest panel each board drew (``panels``). It reads the service
and the store; it may import the domain, the errors, the store port, the service and
the link's wire types, never the HTTP API, the tunnels or the dryad link.
"""
