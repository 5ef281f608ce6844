"""Fixtures for the API tests: ``farm`` (app + client + store) and its ``settings``."""

from tests.coordinator.api.harness import farm, settings, template

__all__ = ["farm", "settings", "template"]
