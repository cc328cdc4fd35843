from django.conf import settings


def test_settings_use_memory_layer_in_tests():
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer")
