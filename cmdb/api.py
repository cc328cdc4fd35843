"""Read-only CMDB API (institutions, systems, servers), scoped to the caller's systems.

Writes happen in the admin console, where they are validated and audited; the API is
for pickers, the NL parser's clients and scripts. Credentials are never exposed here:
a server shows only whether it has one.
"""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework.routers import SimpleRouter

from .models import SERVER_SETTINGS_FIELDS, Institution, Server, System


class InstitutionSerializer(serializers.ModelSerializer):
    aliases = serializers.ListField(source="alias_list", child=serializers.CharField(), read_only=True)

    class Meta:
        model = Institution
        fields = ["id", "code", "name", "aliases", "tier", "contact"]


@extend_schema_field({"type": "string", "pattern": r"^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", "example": "22:00:00",
                      "description": "local wall-clock time (HH:MM:SS), no UTC offset"})  # fmt: skip
class LocalTimeField(serializers.TimeField):
    """A deploy-window bound: a time of day at the site, not an instant, so it carries no
    offset (OpenAPI's `format: time` would demand one)."""


class SystemSerializer(serializers.ModelSerializer):
    institution: serializers.SlugRelatedField[Institution] = serializers.SlugRelatedField(
        slug_field="code", read_only=True
    )
    tier = serializers.IntegerField(source="institution.tier", read_only=True)
    window_start = LocalTimeField(read_only=True)
    window_end = LocalTimeField(read_only=True)

    class Meta:
        model = System
        fields = ["id", "code", "name", "institution", "tier", "sensitive", "window_start", "window_end"]


class ServerSerializer(serializers.ModelSerializer):
    system: serializers.SlugRelatedField[System] = serializers.SlugRelatedField(slug_field="code", read_only=True)
    has_credential = serializers.SerializerMethodField()

    class Meta:
        model = Server
        fields = [
            "id",
            "server_id",
            "system",
            "hostname",
            "ip",
            "os_type",
            "ssh_port",
            "ssh_user",
            "has_credential",
            *SERVER_SETTINGS_FIELDS,
        ]

    def get_has_credential(self, obj) -> bool:
        return obj.credential_id is not None


class InstitutionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = InstitutionSerializer
    filterset_fields = ["tier", "code"]

    def get_queryset(self):
        return Institution.objects.for_user(self.request.user).order_by("code")


class SystemViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = SystemSerializer
    filterset_fields = ["sensitive", "code", "institution__code"]

    def get_queryset(self):
        return System.objects.for_user(self.request.user).select_related("institution").order_by("code")


class ServerViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ServerSerializer
    filterset_fields = ["os_type", "canary", "active", "rolling_group", "system__code", "server_id"]

    def get_queryset(self):
        return Server.objects.for_user(self.request.user).select_related("system").order_by("server_id")


router = SimpleRouter()
router.register("cmdb/institutions", InstitutionViewSet, basename="cmdb-institution")
router.register("cmdb/systems", SystemViewSet, basename="cmdb-system")
router.register("cmdb/servers", ServerViewSet, basename="cmdb-server")

urlpatterns = [path("", include(router.urls))]
