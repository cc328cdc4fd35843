from __future__ import annotations

from rest_framework import serializers

from .models import ApprovalStep, OpsTask


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
