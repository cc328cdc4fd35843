from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cmdb import auth_policy, otp
from intake.api import seed_urlpatterns as intake_seed_urlpatterns

admin.site.site_header = "GUARDiA CMDB"
admin.site.site_title = "GUARDiA"
admin.site.index_title = "CMDB / 관리 콘솔"

urlpatterns = [
    path("", RedirectView.as_view(url="/console/", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_policy.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/otp/", otp.verify, name="otp_verify"),
    path("accounts/otp/setup/", otp.setup, name="otp_setup"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The schema answers 401 to an anonymous caller (SPECTACULAR_SETTINGS SERVE_PERMISSIONS);
    # the docs page sends a browser to the login page first.
    path("api/v1/docs/", login_required(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
    path("api/v1/", include("guardia.api_urls")),
    path("console/", include("governance.urls")),
    path("audit/", include("audit.urls")),
    path("execution/", include("execution.urls")),
    path("app/", include("intake.app_urls")),
    path("messenger/", include("intake.urls")),
    # The seed's intake path (the same view as /api/v1/sr/intake).
    path("", include(intake_seed_urlpatterns)),
]

handler403 = "guardia.errors.permission_denied"
handler404 = "guardia.errors.page_not_found"
handler500 = "guardia.errors.server_error"
