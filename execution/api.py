"""Read-only REST views of executions and server runs, for users who may see the task."""

from __future__ import annotations

from django.urls import include, path
from rest_framework import permissions, routers, serializers, viewsets

from governance.queries import visible_tasks as visible_task_rows

from .models import Execution, ServerRun, StepResult


class StepResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = StepResult
        fields = [
            "seq",
            "name",
            "phase",
            "command",
            "exit_code",
            "state",
            "duration_ms",
            "output_sha256",
            "output_excerpt",
            "started_at",
        ]


class ServerRunSerializer(serializers.ModelSerializer):
    execution: serializers.PrimaryKeyRelatedField[Execution] = serializers.PrimaryKeyRelatedField(read_only=True)
    steps = StepResultSerializer(many=True, read_only=True)

    class Meta:
        model = ServerRun
        fields = [
            "id",
            "execution",
            "server_ref",
            "group_index",
            "tier",
            "playbook_version",
            "state",
            "message",
            "health",
            "log_tail",
            "started_at",
            "finished_at",
            "steps",
        ]


class ExecutionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Execution
        fields = [
            "id",
            "task_ref",
            "playbook",
            "playbook_version",
            "outcome",
            "reason",
            "canary_share",
            "batch_size",
            "max_parallel",
            "failures_allowed",
            "safety_gate",
            "rollback_all",
            "plan",
            "summary",
            "started_at",
            "finished_at",
        ]


def visible_tasks(user):
    """Execution rows are read through their task: the same scoped query as every task view
    (empty for the OpenAPI generator's anonymous user)."""
    return visible_task_rows(user).values("pk")


class ExecutionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ExecutionSerializer
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["task_ref", "outcome"]

    def get_queryset(self):
        queryset = Execution.objects.filter(task__in=visible_tasks(self.request.user))
        task_ref = self.request.query_params.get("task")
        return queryset.filter(task_ref=task_ref) if task_ref else queryset


class ServerRunViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ServerRunSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        queryset = ServerRun.objects.filter(execution__task__in=visible_tasks(self.request.user)).prefetch_related(
            "steps"
        )
        execution = self.request.query_params.get("execution")
        return queryset.filter(execution_id=execution) if execution and execution.isdigit() else queryset


router = routers.SimpleRouter()
router.register("executions", ExecutionViewSet, basename="execution")
router.register("server-runs", ServerRunViewSet, basename="server-run")

urlpatterns = [path("", include(router.urls))]
