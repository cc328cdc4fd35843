"""Console control for the execution queue: the PM's priority on a task (governance.priority)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from . import priority
from .errors import Forbidden, GovernanceError, NotFound


@login_required
@require_POST
def task_priority(request: HttpRequest, task_id: str) -> HttpResponse:
    try:
        task = priority.set_priority(request.user, task_id, request.POST.get("priority", ""))
    except Forbidden as exc:
        raise PermissionDenied(exc.detail) from exc
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    except GovernanceError as exc:
        messages.error(request, exc.detail)
        return redirect("console:task", task_id)
    messages.success(request, _("우선순위를 %(priority)s(으)로 정했습니다.") % {"priority": task.priority})
    return redirect("console:task", task_id)
