from __future__ import annotations

from django.contrib.auth.models import User
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from cmdb.models import Server, System

from .attachments import SHA256_ANY_CASE_RE
from .models import ApprovalStep, OpsTask, Status, SubType

PLAN_SHA256_HELP = (
    "SHA-256 of the execution plan the decider was shown; if it differs from the task's "
    "current plan the decision is refused with 409 and nothing changes"
)


class ApprovalDecisionSerializer(serializers.Serializer):
    step_id = serializers.IntegerField(min_value=1)
    decision = serializers.ChoiceField(choices=["APPROVED", "REJECTED"])
    comments = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=2000, help_text="required when rejecting"
    )
    plan_sha256 = serializers.RegexField(
        SHA256_ANY_CASE_RE, required=False, allow_blank=True, default="", help_text=PLAN_SHA256_HELP
    )


_COMMAND = {"type": "object", "properties": {"name": {"type": "string"}, "command": {"type": "string"}}}
_UPLOAD = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "size": {"type": "integer", "nullable": True},
        "sha256": {"type": "string"},
        "remote": {"type": "string"},
    },
}
PLAN_SCHEMA = {
    "type": "object",
    "description": "The execution plan approvers are shown (empty for tasks filed before plans existed): "
    "rollout, uploads, per set of servers the exact command lines (secrets masked as ****), "
    "health checks and rollback commands, and warnings.",
    "properties": {
        "playbook": {"type": "string"},
        "playbook_version": {"type": "string"},
        "read_only": {"type": "boolean"},
        "rollout": {
            "type": "object",
            "additionalProperties": True,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "label": {"type": "string"},
                            "servers": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                }
            },
        },
        "uploads": {"type": "array", "items": _UPLOAD},
        "step_sets": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "servers": {"type": "array", "items": {"type": "string"}},
                    "steps": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                    "health": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                    "rollback": {"type": "array", "items": _COMMAND},
                },
            },
        },
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": True,
}


@extend_schema_field(PLAN_SCHEMA)
class PlanField(serializers.JSONField):
    pass


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """The error answers of governance endpoints: {"detail": "..."} or {"<field>": ["..."]}."""
    meaning = {
        400: "bad input; the body names each field",
        401: "not logged in",
        403: "not allowed",
        404: "not found, or not visible to the caller",
        409: "the state does not allow it (already decided, stopped, plan changed)",
    }
    return {code: OpenApiResponse(OpenApiTypes.OBJECT, description=meaning[code]) for code in codes}


class ArtifactSerializer(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField()
    version = serializers.CharField(allow_blank=True)


class ServerTargetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Server
        fields = ["server_id", "hostname", "ip", "rolling_group", "canary"]


class StepSerializer(serializers.ModelSerializer):
    # null until someone is assigned / has decided (the schema says so: allow_null)
    assigned_to: serializers.StringRelatedField[User] = serializers.StringRelatedField(allow_null=True)
    original_owner: serializers.StringRelatedField[User] = serializers.StringRelatedField(allow_null=True)
    actual_approver: serializers.StringRelatedField[User] = serializers.StringRelatedField(allow_null=True)

    class Meta:
        model = ApprovalStep
        fields = [
            "id",
            "step_order",
            "role",
            "assigned_to",
            "original_owner",
            "actual_approver",
            "routing",
            "escalation_level",
            "status",
            "comments",
            "activated_at",
            "sla_deadline",
            "decided_at",
        ]


class DecisionResultSerializer(serializers.Serializer):
    result = serializers.ChoiceField(
        choices=["APPROVED", "REJECTED", "NEXT_STEP"],
        help_text="APPROVED: the task is fully approved; REJECTED: it is rejected; NEXT_STEP: the next step is open",
    )
    task_id = serializers.CharField()
    task_status = serializers.ChoiceField(choices=Status.choices)
    next_step = StepSerializer(allow_null=True)


class TaskSerializer(serializers.ModelSerializer):
    system: serializers.SlugRelatedField[System] = serializers.SlugRelatedField(slug_field="code", read_only=True)
    institution = serializers.CharField(source="system.institution.code", read_only=True)
    requester: serializers.StringRelatedField[User] = serializers.StringRelatedField()
    current_approver: serializers.StringRelatedField[User] = serializers.StringRelatedField(allow_null=True)
    targets: serializers.SlugRelatedField[Server] = serializers.SlugRelatedField(
        slug_field="server_id", many=True, read_only=True
    )
    seed_code = serializers.CharField(read_only=True)

    class Meta:
        model = OpsTask
        fields = [
            "task_id",
            "category",
            "sub_type",
            "title",
            "sr_number",
            "system",
            "institution",
            "targets",
            "requester",
            "channel",
            "risk",
            "emergency",
            "urgent",
            "status",
            "seed_code",
            "current_approver",
            "stop_requested",
            "failure_reason",
            "rework_round",
            "created_at",
            "approved_at",
            "finished_at",
        ]


class TimelineItemSerializer(serializers.Serializer):
    time = serializers.DateTimeField()
    kind = serializers.CharField()
    actor = serializers.CharField()
    text = serializers.CharField()
    # A field named "data": DRF's serializer metaclass moves declared fields off the class,
    # so Serializer.data is not shadowed at run time.
    data = serializers.DictField(required=False)  # type: ignore[assignment]


class TaskDetailSerializer(TaskSerializer):
    """One task with everything a decider needs: the plan and its hash, the playbook version,
    the parameters (secrets masked), the artifact and the target servers."""

    parameters = serializers.JSONField(
        source="masked_parameters", read_only=True, help_text="playbook parameters; secret values are shown as ****"
    )
    plan = PlanField(read_only=True)
    plan_sha256 = serializers.CharField(read_only=True, help_text="SHA-256 of the canonical JSON of `plan`")
    playbook_version = serializers.CharField(
        read_only=True, help_text="the plan's playbook version; pinned at final approval"
    )
    artifact = ArtifactSerializer(read_only=True, allow_null=True)
    target_servers = ServerTargetSerializer(source="targets", many=True, read_only=True)
    steps = StepSerializer(many=True, read_only=True)

    class Meta(TaskSerializer.Meta):
        fields = [
            *TaskSerializer.Meta.fields,
            "playbook",
            "playbook_version",
            "plan",
            "plan_sha256",
            "parameters",
            "artifact",
            "target_servers",
            "steps",
        ]


class TaskHistorySerializer(serializers.Serializer):
    task = TaskDetailSerializer()
    steps = StepSerializer(many=True)
    timeline = TimelineItemSerializer(many=True)


class StopSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


class ValidationSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=["approve", "rework", "takeover"])
    comments = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)
    plan_sha256 = serializers.RegexField(
        SHA256_ANY_CASE_RE, required=False, allow_blank=True, default="", help_text=PLAN_SHA256_HELP
    )


class TaskSubmitSerializer(serializers.Serializer):
    """A new request (multipart with optional files, or JSON). Shape only: every rule is in
    governance.services.submit_task."""

    system = serializers.CharField(max_length=64, help_text="system code, e.g. BUDGET")
    sub_type = serializers.ChoiceField(choices=SubType.choices)
    title = serializers.CharField(max_length=200)
    targets = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, help_text="server ids of the system"
    )
    parameters = serializers.JSONField(
        required=False, default=dict, help_text="playbook parameters (a JSON object; a JSON string in multipart)"
    )
    emergency = serializers.BooleanField(required=False, default=False)
    sr_number = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    raw_request = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    artifact = serializers.FileField(required=False, help_text="WAR/JAR/archive → parameters.artifact_sha256")
    cert_file = serializers.FileField(required=False, help_text="PEM certificate → parameters.cert_sha256")
    key_file = serializers.FileField(required=False, help_text="PEM private key → parameters.key_sha256")
    chain_file = serializers.FileField(required=False, help_text="PEM chain → parameters.chain_sha256")

    def validate_parameters(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError(gettext("JSON 객체({...})여야 합니다."))
        return value
