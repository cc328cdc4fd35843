"""REST: GET audit/verify, GET audit/export?format=csv|jsonl|pdf and GET audit/proof/<task>, for holders of
the audit view permission (auditors, security officers, admins)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services
from .access import IsAuditor
from .forms import ExportForm


class IgnoreFormatParameter(DefaultContentNegotiation):
    """`?format=` names the export format here, not a DRF renderer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class VerifyView(APIView):
    permission_classes = [IsAuditor]

    @extend_schema(
        summary="Verify the audit chain now (the run itself is audited)", responses={200: OpenApiTypes.OBJECT}
    )
    def get(self, request):
        report = services.run_verification(request.user, source="api")
        return Response({**report.as_dict(), "message": report.message()})


class ExportView(APIView):
    permission_classes = [IsAuditor]
    content_negotiation_class = IgnoreFormatParameter

    @extend_schema(
        summary="Export audit entries with the covering signed checkpoint",
        parameters=[
            OpenApiParameter("format", str, enum=["csv", "jsonl", "pdf"], required=True),
            OpenApiParameter("since", str, description="YYYY-MM-DD (local day, inclusive)"),
            OpenApiParameter("until", str, description="YYYY-MM-DD (local day, inclusive)"),
            OpenApiParameter("institution", str),
            OpenApiParameter("task", str),
        ],
        # The file in the format asked for (audit.exports.CONTENT_TYPES).
        responses={
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, "application/pdf"): OpenApiTypes.BINARY,
        },
    )
    def get(self, request):
        from .views import export_response

        form = ExportForm(request.query_params)
        if not form.is_valid():
            return Response({k: [str(e) for e in v] for k, v in form.errors.items()}, status=400)
        return export_response(form.cleaned_data["format"], form.export_filter(), request.user)


class ProofView(APIView):
    permission_classes = [IsAuditor]

    @extend_schema(
        summary="Inclusion proof for one task's entries (verify with manage.py audit_verify_proof)",
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT},
    )
    def get(self, request, task_id: str):
        from . import proofs

        try:
            return Response(proofs.prove(request.user, task_id))
        except proofs.ProofError as exc:
            return Response({"detail": str(exc)}, status=404)


urlpatterns = [
    path("audit/verify", VerifyView.as_view(), name="audit-verify"),
    path("audit/export", ExportView.as_view(), name="audit-export"),
    path("audit/proof/<str:task_id>", ProofView.as_view(), name="audit-proof"),
]
