"""The golden replays use the same in-process app as the API tests."""

from tests.coordinator.api.harness import farm, settings, template

__all__ = ["farm", "settings", "template"]
