from __future__ import annotations

from rest_framework import serializers

from .models import ApprovalStep, OpsTask, SubType


class ApprovalDecisionSerializer(serializers.Serializer):
    step_id = serializers.IntegerField(min_value=1)
    decision = serializers.ChoiceField(choices=["APPROVED", "REJECTED"])
    comments = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class StepSerializer(serializers.ModelSerializer):
    assigned_to = serializers.StringRelatedField()
    original_owner = serializers.StringRelatedField()
    actual_approver = serializers.StringRelatedField()

    class Meta:
        model = ApprovalStep
        fields = ["id", "step_order", "role", "assigned_to", "original_owner", "actual_approver", "routing",
                  "escalation_level", "status", "comments", "activated_at", "sla_deadline", "decided_at"]


class DecisionResultSerializer(serializers.Serializer):
    result = serializers.CharField()
    task_id = serializers.CharField()
    task_status = serializers.CharField()
    next_step = StepSerializer(allow_null=True)


class TaskSerializer(serializers.ModelSerializer):
    system = serializers.SlugRelatedField(slug_field="code", read_only=True)
    institution = serializers.CharField(source="system.institution.code", read_only=True)
    requester = serializers.StringRelatedField()
    current_approver = serializers.StringRelatedField()
    targets = serializers.SlugRelatedField(slug_field="server_id", many=True, read_only=True)
    seed_code = serializers.CharField(read_only=True)

    class Meta:
        model = OpsTask
        fields = ["task_id", "category", "sub_type", "title", "sr_number", "system", "institution", "targets",
                  "requester", "channel", "risk", "emergency", "urgent", "status", "seed_code", "current_approver",
                  "stop_requested", "failure_reason", "rework_round", "created_at", "approved_at", "finished_at"]


class TimelineItemSerializer(serializers.Serializer):
    time = serializers.DateTimeField()
    kind = serializers.CharField()
    actor = serializers.CharField()
    text = serializers.CharField()
    data = serializers.DictField(required=False)


class TaskHistorySerializer(serializers.Serializer):
    task = TaskSerializer()
    steps = StepSerializer(many=True)
    timeline = TimelineItemSerializer(many=True)


class StopSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


class ValidationSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=["approve", "rework", "takeover"])
    comments = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)


class TaskSubmitSerializer(serializers.Serializer):
    """A new request (multipart with optional files, or JSON). Shape only: every rule is in
    governance.services.submit_task."""

    system = serializers.CharField(max_length=64, help_text="system code, e.g. BUDGET")
    sub_type = serializers.ChoiceField(choices=SubType.choices)
    title = serializers.CharField(max_length=200)
    targets = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list,
                                    help_text="server ids of the system")
    parameters = serializers.JSONField(required=False, default=dict,
                                       help_text="playbook parameters (a JSON object; a JSON string in multipart)")
    emergency = serializers.BooleanField(required=False, default=False)
    sr_number = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    raw_request = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    artifact = serializers.FileField(required=False, help_text="WAR/JAR/archive → parameters.artifact_sha256")
    cert_file = serializers.FileField(required=False, help_text="PEM certificate → parameters.cert_sha256")
    key_file = serializers.FileField(required=False, help_text="PEM private key → parameters.key_sha256")
    chain_file = serializers.FileField(required=False, help_text="PEM chain → parameters.chain_sha256")

    def validate_parameters(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("expected a JSON object")
        return value


class TaskDetailSerializer(TaskSerializer):
    parameters = serializers.JSONField(read_only=True)
    steps = StepSerializer(many=True, read_only=True)

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "parameters", "steps"]
