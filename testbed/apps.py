from __future__ import annotations

from django.apps import AppConfig


class TestbedConfig(AppConfig):
    """The real-sshd testbed for development, tests and the demo. It has no models; installing
    it adds the `testbed` management command. Production settings do not install it."""

    name = "testbed"
    verbose_name = "sshd testbed"
