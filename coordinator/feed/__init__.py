"""The feed: what happened in the farm, told to whoever listens.

Owns the event broadcaster (``events``: stored transitions fanned out live as typed
events, and ephemeral panel events), webhook deliveries (``webhooks``), Prometheus
metrics (``metrics``), the latest panel each board drew (``panels``) and the JSON fields
the edges write events with (``render``). It reads the service and the store; it may
import the domain, the errors, the store port, the service, the link's wire types and
``boruta_json``'s time format, never the HTTP API, the tunnels or the dryad link.
"""
