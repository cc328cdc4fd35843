"""Governance REST API (DRF): the seed's approval and history endpoints plus task search.

Views only translate HTTP to services; a service's GovernanceError becomes its 400/403/404/409
answer in one place, the API's exception handler (guardia.api.exception_handler).
"""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch, prefetch_related_objects
from django.urls import include, path
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from . import control, services
from .errors import NotFound as NotFoundError
from .models import ApprovalStep, OpsTask
from .queries import search_tasks, visible_task
from .reports import task_timeline
from .serializers import (
    ApprovalDecisionSerializer,
    DecisionResultSerializer,
    StepSerializer,
    StopSerializer,
    TaskDetailSerializer,
    TaskHistorySerializer,
    TaskSerializer,
    TaskSubmitSerializer,
    ValidationSerializer,
    error_responses,
)
from .submission import file_request


@extend_schema(
    request=ApprovalDecisionSerializer,
    responses={200: DecisionResultSerializer, **error_responses(400, 401, 403, 404, 409)},
    summary="Approve or reject an approval step (seed POST /approval/process)",
)
@api_view(["POST"])
def approval_process(request):
    form = ApprovalDecisionSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    # decide_step finds the step through the caller's visible tasks inside its transaction, so
    # a step of a task the caller may not see is 404 before anything about its state is said,
    # without a second look-up here before the transaction.
    try:  # the serializer's fields are decide_step's parameters
        decision = services.decide_step(request.user, **form.validated_data)
    except NotFoundError as exc:
        raise NotFoundError(f"approval step {form.validated_data['step_id']} not found") from exc
    body = {
        "result": decision.result,
        "task_id": decision.task.task_id,
        "task_status": decision.task.status,
        "next_step": StepSerializer(decision.next_step).data if decision.next_step else None,
    }
    return Response(body)


def _steps_with_people():
    return ApprovalStep.objects.select_related("assigned_to", "original_owner", "actual_approver")


@extend_schema(
    responses={200: TaskHistorySerializer, **error_responses(401, 404)},
    summary="A task's full timeline (seed GET /task/history)",
)
@api_view(["GET"])
def task_history(request, task_id: str):
    task = visible_task(request.user, task_id)
    prefetch_related_objects([task], "targets", Prefetch("steps", queryset=_steps_with_people()))
    return Response(
        {
            "task": TaskDetailSerializer(task).data,
            "steps": StepSerializer(task.steps.all(), many=True).data,
            "timeline": task_timeline(task),
        }
    )


class TaskFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=OpsTask._meta.get_field("status").choices)
    institution = django_filters.CharFilter(field_name="system__institution__code")
    system = django_filters.CharFilter(field_name="system__code")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = OpsTask
        fields = ["status", "category", "sub_type", "risk", "institution", "system", "urgent"]


class TaskPagination(CursorPagination):
    """Newest first, a page at a time by where the last one ended (`next` / `previous`
    carry the cursor): a deep page costs what the first does, where an offset read and threw
    away every row before it, and a count scanned every visible task on every page.
    `limit` sets the page size (at most 500)."""

    ordering = ("-created_at", "-pk")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound as exc:  # DRF answers 404 "Invalid cursor"; this is bad input, named
            raise ValidationError({self.cursor_query_param: ["페이지 위치(cursor)를 읽을 수 없습니다."]}) from exc


class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Tasks the caller may see; `q` searches task id / SR number / title, `person` any participant.
    POST files a new request."""

    serializer_class = TaskSerializer
    filterset_class = TaskFilter
    pagination_class = TaskPagination
    lookup_field = "task_id"

    @extend_schema(
        responses={200: TaskSerializer(many=True), **error_responses(400, 401)},
        summary="Tasks the caller may see, newest first, paged by cursor (follow `next`)",
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        responses={200: TaskDetailSerializer, **error_responses(401, 404)},
        summary="One task with its plan, parameters (secrets masked), artifact and targets",
    )
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    def get_serializer_class(self):
        # One task carries its plan, parameters, artifact and targets; the list stays light.
        return TaskDetailSerializer if self.action == "retrieve" else TaskSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return OpsTask.objects.none()
        params = self.request.query_params
        tasks = search_tasks(self.request.user, q=params.get("q", ""), person=params.get("person", ""))
        # Every serializer field read in the same few queries whatever the page size.
        tasks = tasks.select_related("current_approver").prefetch_related("targets")
        if self.action == "retrieve":
            tasks = tasks.prefetch_related(Prefetch("steps", queryset=_steps_with_people()))
        return tasks

    @extend_schema(
        request={"multipart/form-data": TaskSubmitSerializer, "application/json": TaskSubmitSerializer},
        responses={201: TaskDetailSerializer},
        summary="File a request (the governance-side submission that intake, the console and clients use)",
        description="400 names the field (system, sub_type, title, targets, parameters, emergency, artifact...); "
        "403 no permission or not your system; 409 on a state conflict.",
    )
    def create(self, request):
        form = TaskSubmitSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        # The serializer's fields are file_request's parameters; the files travel as uploads.
        data = dict(form.validated_data)
        files = ("artifact", "cert_file", "key_file", "chain_file")
        uploads = {field: data.pop(field) for field in files if field in data}
        task = file_request(request.user, uploads=uploads, channel="API", **data)
        task = OpsTask.objects.select_related("system__institution", "requester").get(pk=task.pk)
        return Response(TaskDetailSerializer(task).data, status=201)

    @extend_schema(request=StopSerializer, responses={200: TaskSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, task_id=None):
        form = StopSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        task = control.stop_task(request.user, task_id, form.validated_data["reason"])
        return Response(TaskSerializer(task).data)

    @extend_schema(
        request=ValidationSerializer, responses={200: TaskSerializer, **error_responses(400, 401, 403, 404, 409)}
    )
    @action(detail=True, methods=["post"])
    def validate(self, request, task_id=None):
        form = ValidationSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        # The serializer's fields are validate_result's parameters (verdict, comments, plan_sha256).
        task = control.validate_result(request.user, task_id, **form.validated_data)
        return Response(TaskSerializer(task).data)


router = SimpleRouter()
router.register("tasks", TaskViewSet, basename="task")

urlpatterns = [
    path("approval/process", approval_process, name="approval-process"),
    path("task/history/<str:task_id>", task_history, name="task-history"),
    path("", include(router.urls)),
]
