"""GUARDiA settings: one file, every value read from the environment.

Embedded defaults let a fresh checkout run with nothing but what the README's run
command installs: SQLite, the django-q2 ORM broker and a loopback Redis for Channels.
Production switches by environment variables only (see README "Production").
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
INSECURE_DEFAULT_SECRET = "guardia-insecure-development-key-do-not-use-in-production"


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name}: expected a boolean (true/false), got {value!r}")


def envint(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer setting, refused at start-up when it is not one or falls outside its bounds."""
    raw = os.getenv(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: expected an integer, got {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}: expected at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}: expected at most {maximum}, got {value}")
    return value


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def envpath(name: str, default: Path) -> Path:
    return Path(os.getenv(name) or default)


# Production mode turns the guard rails into hard failures: the process refuses to
# start rather than run a government system with a debug page or a guessable key.
PRODUCTION = envbool("GUARDIA_PRODUCTION", "false")
DEBUG = envbool("GUARDIA_DEBUG", "false" if PRODUCTION else "true")
SECRET_KEY = os.getenv("GUARDIA_SECRET_KEY", INSECURE_DEFAULT_SECRET)
DATA_DIR = envpath("GUARDIA_DATA_DIR", BASE_DIR / "var")
DATA_DIR.mkdir(parents=True, exist_ok=True)

# The vault key lives outside the database: an env variable (base64 of 32 bytes) or a
# key file readable only by the service account. See cmdb/vault.py.
VAULT_KEY = os.getenv("GUARDIA_VAULT_KEY", "")
VAULT_KEY_FILE = os.getenv("GUARDIA_VAULT_KEY_FILE", "")
if not VAULT_KEY and not VAULT_KEY_FILE and not PRODUCTION:
    VAULT_KEY_FILE = str(DATA_DIR / "keys" / "vault.key")

if PRODUCTION:
    problems = []
    if DEBUG:
        problems.append("GUARDIA_DEBUG is on (set GUARDIA_DEBUG=false)")
    if SECRET_KEY == INSECURE_DEFAULT_SECRET or len(SECRET_KEY) < 50:
        problems.append("GUARDIA_SECRET_KEY is the default or shorter than 50 characters")
    if not VAULT_KEY and not VAULT_KEY_FILE:
        problems.append("no vault key: set GUARDIA_VAULT_KEY or GUARDIA_VAULT_KEY_FILE")
    if problems:
        raise ImproperlyConfigured("GUARDiA refuses to start in production mode: " + "; ".join(problems))

ALLOWED_HOSTS = envlist("GUARDIA_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("GUARDIA_CSRF_TRUSTED_ORIGINS")
# Client networks (bastion ranges) allowed to reach the app over HTTP and WebSocket; empty
# means no restriction.
CLIENT_ALLOWLIST = envlist("GUARDIA_CLIENT_ALLOWLIST")
# Reverse proxies (addresses or networks) whose X-Forwarded-For is believed, for the
# allowlist and login throttling alike; nobody else's forwarded header is (guardia/middleware.py).
TRUSTED_PROXIES = envlist("GUARDIA_TRUSTED_PROXIES")
BASE_URL = os.getenv("GUARDIA_BASE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",  # must come first so runserver and the ASGI stack are Channels-aware
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_q",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "audit",
    "cmdb",
    "governance",
    "execution",
    "execution.agent",
    "intake",
]
# The sshd testbed (development, tests, the demo) is an app of its own that production does
# not install: GUARDIA_TESTBED defaults to on outside production mode and is refused in it.
TESTBED_APP = envbool("GUARDIA_TESTBED", "false" if PRODUCTION else "true")
if TESTBED_APP:
    if PRODUCTION:
        raise ImproperlyConfigured("GUARDiA refuses to start in production mode: GUARDIA_TESTBED is on")
    INSTALLED_APPS.append("testbed")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "guardia.middleware.ClientAllowlistMiddleware",
    # Daphne serves no static files itself; WhiteNoise serves them locally (closed network, no CDN),
    # after the allowlist so outside networks get nothing at all.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "guardia.middleware.KoreanFirstLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "cmdb.auth_policy.AccountPolicyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    # Last, so a view's "database is locked" becomes a 503 with Retry-After, not a 500.
    "guardia.middleware.DatabaseBusyMiddleware",
]

ROOT_URLCONF = "guardia.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "governance.context_processors.guardia",
            ],
        },
    },
]
WSGI_APPLICATION = "guardia.wsgi.application"
ASGI_APPLICATION = "guardia.asgi.application"

# SQLite is the default because a closed-network pilot must run from a checkout with no
# database server. The web tier, the django-q2 ORM broker and Channels all write at once,
# so it runs in WAL mode with IMMEDIATE transactions: a deferred transaction that later
# writes fails at once with "database is locked", whatever the timeout.
# Writers take turns in arrival order (guardia.db_sqlite) rather than in SQLite's busy-sleep
# lottery; GUARDIA_SQLITE_WRITE_QUEUE=false falls back to Django's plain backend.
SQLITE_ENGINE = "guardia.db_sqlite" if envbool("GUARDIA_SQLITE_WRITE_QUEUE", "true") else "django.db.backends.sqlite3"
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
# Web requests run on a kept pool of threads (guardia.handler), each keeping its SQLite
# connection between requests for this long (opening one cost about a millisecond of CPU a
# request); PostgreSQL keeps its connections in the psycopg pool instead.
SQLITE_CONN_MAX_AGE = 600
WEB_REQUEST_THREADS = envint("GUARDIA_WEB_REQUEST_THREADS", 32, minimum=4, maximum=512)
DATABASE_URL = os.getenv("GUARDIA_DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["ENGINE"] = SQLITE_ENGINE
        DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
        DATABASES["default"]["CONN_MAX_AGE"] = SQLITE_CONN_MAX_AGE
    elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Under ASGI every request runs in its own thread, so persistent per-thread
        # connections pile up until PostgreSQL refuses clients; a psycopg pool bounds them.
        # prepare_threshold: the statements compiled once (governance.compiled) run bound on the
        # server and are prepared on their connection after this many runs, so PostgreSQL stops
        # planning them again (the step's lock, a join of a dozen tables, is planned in ~3 ms and
        # run in ~0.4). Django's own statements are bound on the client and never prepared.
        DATABASES["default"]["OPTIONS"] = {
            "pool": {"min_size": 2, "max_size": envint("GUARDIA_DB_POOL_SIZE", 20), "timeout": 30},
            "prepare_threshold": 2,
        }
    elif DATABASE_URL.startswith("mssql://"):
        # mssql-django's engine is "mssql"; it connects through pyodbc and Microsoft's
        # "ODBC Driver 18 for SQL Server" unless GUARDIA_MSSQL_DRIVER=mssql-python selects
        # the bundled driver (no system ODBC install).
        DATABASES["default"]["ENGINE"] = "mssql"
        driver = os.getenv("GUARDIA_MSSQL_ODBC_DRIVER", "ODBC Driver 18 for SQL Server")
        DATABASES["default"]["OPTIONS"] = {"driver": driver}
        if os.getenv("GUARDIA_MSSQL_DRIVER", "pyodbc") == "mssql-python":
            DATABASES["default"]["OPTIONS"]["python_driver"] = "mssql_python"
else:
    DATABASES = {
        "default": {
            "ENGINE": SQLITE_ENGINE,
            "NAME": str(DATA_DIR / "guardia.sqlite3"),
            "OPTIONS": SQLITE_OPTIONS,
            "CONN_MAX_AGE": SQLITE_CONN_MAX_AGE,
            "TEST": {"NAME": str(DATA_DIR / "test-guardia.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Public-sector password and session rules (cmdb/auth_policy.py). The defaults follow the
# usual agency checklist: 10+ characters of 3+ classes, the last 5 passwords not reused,
# a 90-day expiry warned 14 days ahead, a change at the first login after someone else
# set the password; sessions end after 30 idle minutes or 12 hours, one per account.
# 0 turns a limit off; a negative one is refused (there are four classes: lower case, upper
# case, digits, symbols).
PASSWORD_MIN_LENGTH = envint("GUARDIA_PASSWORD_MIN_LENGTH", 10, minimum=0)
PASSWORD_MIN_CLASSES = envint("GUARDIA_PASSWORD_MIN_CLASSES", 3, minimum=0, maximum=4)
PASSWORD_HISTORY = envint("GUARDIA_PASSWORD_HISTORY", 5, minimum=0)
PASSWORD_MAX_AGE_DAYS = envint("GUARDIA_PASSWORD_MAX_AGE_DAYS", 90, minimum=0)
PASSWORD_WARN_DAYS = envint("GUARDIA_PASSWORD_WARN_DAYS", 14, minimum=0)
PASSWORD_FIRST_LOGIN_CHANGE = envbool("GUARDIA_PASSWORD_FIRST_LOGIN_CHANGE", "true")
SESSION_IDLE_MINUTES = envint("GUARDIA_SESSION_IDLE_MINUTES", 30, minimum=0)
# In seconds, when set (non-zero): takes the place of the minutes, for a short demo or a test.
SESSION_IDLE_SECONDS = envint("GUARDIA_SESSION_IDLE_SECONDS", 0, minimum=0)
SESSION_MAX_HOURS = envint("GUARDIA_SESSION_MAX_HOURS", 12, minimum=0)
SESSION_SINGLE = envbool("GUARDIA_SESSION_SINGLE", "true")
LOGIN_NOTICE = envbool("GUARDIA_LOGIN_NOTICE", "true")
# Second factor (TOTP, cmdb/otp.py): required at login for whoever holds the permission
# auth.require_second_factor (the role table, cmdb/roles.py, gives it to admin,
# security_officer and supervisor; superusers always), and asked again within
# OTP_STEP_UP_MINUTES before a high/critical-risk decision or a global-stop release
# (governance calls STEP_UP_CHECK by name). GUARDIA_OTP_REQUIRED_ROLES, when set, names the
# roles that hold that permission instead (applied to the groups at the next migrate).
OTP_ENABLED = envbool("GUARDIA_OTP_ENABLED", "true")
OTP_REQUIRED_ROLES = envlist("GUARDIA_OTP_REQUIRED_ROLES")
OTP_STEP_UP_MINUTES = envint("GUARDIA_OTP_STEP_UP_MINUTES", 5)
OTP_TOTP_ISSUER = "GUARDiA"
STEP_UP_CHECK = "cmdb.otp.has_fresh_second_factor" if OTP_ENABLED else ""
if SESSION_MAX_HOURS:
    SESSION_COOKIE_AGE = SESSION_MAX_HOURS * 3600
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": PASSWORD_MIN_LENGTH},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "cmdb.auth_policy.CharacterClassValidator"},
    {"NAME": "cmdb.auth_policy.PasswordHistoryValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
if envbool("GUARDIA_LDAP_ENABLED", "false"):
    AUTHENTICATION_BACKENDS.insert(1, "cmdb.ldap.DirectoryBackend")

# Directory login (LDAP / Active Directory), off by default: accounts are local. When on,
# the directory is asked first and local accounts stay for break-glass administrators
# (cmdb/ldap.py). Either a service bind (GUARDIA_LDAP_BIND_DN + _PASSWORD) searches for
# the user, or the user's own credentials do (AD: GUARDIA_LDAP_BIND_DN=%(user)s@corp.example
# with no password), or GUARDIA_LDAP_USER_DN_TEMPLATE binds directly. TLS is verified
# against the site's CA (GUARDIA_LDAP_CA_FILE) for ldaps:// and StartTLS alike.
LDAP_ENABLED = envbool("GUARDIA_LDAP_ENABLED", "false")
# Hours between the scheduled `sync_directory` runs (cmdb/schedules.py; needs a service bind);
# 0: no schedule.
DIRECTORY_SYNC_HOURS = envint("GUARDIA_DIRECTORY_SYNC_HOURS", 24)
# The owner-mapping check (governance/owner_check.py): how often it runs (monthly, weekly,
# daily, off), after how many days away an owner is reported, and after how many days
# without a login anyone on a system's approval ladder is (0 turns either test off).
OWNER_CHECK_EVERY = os.getenv("GUARDIA_OWNER_CHECK_EVERY", "monthly")
OWNER_AWAY_DAYS = envint("GUARDIA_OWNER_AWAY_DAYS", 14)
OWNER_IDLE_DAYS = envint("GUARDIA_OWNER_IDLE_DAYS", 90)
GUARDIA_LDAP_DISABLED_FILTER = os.getenv("GUARDIA_LDAP_DISABLED_FILTER", "")
# "role=group DN;role=group DN" (a role may appear more than once).
GUARDIA_LDAP_ROLE_GROUPS: dict[str, list[str]] = {}
for _pair in filter(None, (p.strip() for p in os.getenv("GUARDIA_LDAP_ROLE_GROUPS", "").split(";"))):
    _role, _sep, _dn = _pair.partition("=")
    if not _sep or not _dn.strip():
        raise ImproperlyConfigured(f"GUARDIA_LDAP_ROLE_GROUPS: expected role=group DN, got {_pair!r}")
    GUARDIA_LDAP_ROLE_GROUPS.setdefault(_role.strip(), []).append(_dn.strip())


def _known_roles(name: str, roles) -> None:
    from cmdb.roles import ROLES  # the role table has no model imports: safe while settings load

    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ImproperlyConfigured(f"{name}: unknown roles {', '.join(unknown)} (known: {', '.join(ROLES)})")


_known_roles("GUARDIA_LDAP_ROLE_GROUPS", GUARDIA_LDAP_ROLE_GROUPS)
_known_roles("GUARDIA_OTP_REQUIRED_ROLES", OTP_REQUIRED_ROLES)
# Called with a user the directory disabled: their open approval steps move on.
ACCOUNT_DISABLED_HOOKS = ["governance.services.reroute_steps_of_inactive_user"]
if LDAP_ENABLED:
    import ldap  # type: ignore[import-untyped]
    from django_auth_ldap.config import (  # type: ignore[import-untyped]
        ActiveDirectoryGroupType,
        GroupOfNamesType,
        LDAPSearch,
        NestedActiveDirectoryGroupType,
        PosixGroupType,
    )

    AUTH_LDAP_SERVER_URI = os.getenv("GUARDIA_LDAP_SERVER_URI", "")
    if not AUTH_LDAP_SERVER_URI:
        raise ImproperlyConfigured("GUARDIA_LDAP_ENABLED: set GUARDIA_LDAP_SERVER_URI (ldap:// or ldaps://)")
    AUTH_LDAP_START_TLS = envbool("GUARDIA_LDAP_START_TLS", "false")
    AUTH_LDAP_BIND_DN = os.getenv("GUARDIA_LDAP_BIND_DN", "")
    AUTH_LDAP_BIND_PASSWORD = os.getenv("GUARDIA_LDAP_BIND_PASSWORD", "")
    AUTH_LDAP_BIND_AS_AUTHENTICATING_USER = envbool(
        "GUARDIA_LDAP_BIND_AS_USER", "false" if AUTH_LDAP_BIND_PASSWORD else "true"
    )
    AUTH_LDAP_CONNECTION_OPTIONS = {
        ldap.OPT_NETWORK_TIMEOUT: envint("GUARDIA_LDAP_TIMEOUT", 5),
        ldap.OPT_TIMEOUT: envint("GUARDIA_LDAP_TIMEOUT", 5),
        ldap.OPT_REFERRALS: 0,
    }
    if os.getenv("GUARDIA_LDAP_CA_FILE"):
        AUTH_LDAP_CONNECTION_OPTIONS.update(
            {
                ldap.OPT_X_TLS_CACERTFILE: os.environ["GUARDIA_LDAP_CA_FILE"],
                ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND,
                ldap.OPT_X_TLS_NEWCTX: 0,
            }
        )  # last: applies the two above
    if os.getenv("GUARDIA_LDAP_USER_DN_TEMPLATE"):
        AUTH_LDAP_USER_DN_TEMPLATE = os.environ["GUARDIA_LDAP_USER_DN_TEMPLATE"]
    else:
        AUTH_LDAP_USER_SEARCH = LDAPSearch(
            os.getenv("GUARDIA_LDAP_USER_SEARCH_BASE", ""),
            ldap.SCOPE_SUBTREE,
            os.getenv("GUARDIA_LDAP_USER_FILTER", "(uid=%(user)s)"),
        )
    _group_types = {
        "groupofnames": GroupOfNamesType,
        "posix": PosixGroupType,
        "activedirectory": ActiveDirectoryGroupType,
        "nested_activedirectory": NestedActiveDirectoryGroupType,
    }
    _group_type = os.getenv("GUARDIA_LDAP_GROUP_TYPE", "groupofnames").lower()
    if _group_type not in _group_types:
        raise ImproperlyConfigured(f"GUARDIA_LDAP_GROUP_TYPE: one of {', '.join(_group_types)}, got {_group_type!r}")
    AUTH_LDAP_GROUP_TYPE = _group_types[_group_type]()
    AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
        os.getenv("GUARDIA_LDAP_GROUP_SEARCH_BASE", ""), ldap.SCOPE_SUBTREE, "(objectClass=*)"
    )
    AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    AUTH_LDAP_ALWAYS_UPDATE_USER = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/console/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Login throttling (django-axes): lock a username+address pair after repeated failures,
# and a whole address that fails too often across usernames (guessing accounts). The
# address is the one the allowlist sees: X-Forwarded-For only from GUARDIA_TRUSTED_PROXIES.
AXES_FAILURE_LIMIT = envint("GUARDIA_LOGIN_FAILURE_LIMIT", 5)
AXES_ADDRESS_FAILURE_LIMIT = envint("GUARDIA_LOGIN_ADDRESS_FAILURE_LIMIT", 20)
AXES_COOLOFF_TIME = envint("GUARDIA_LOGIN_COOLOFF_MINUTES", 15) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HANDLER = "guardia.throttle.AddressAwareAxesHandler"
AXES_CLIENT_IP_CALLABLE = "guardia.middleware.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = envbool("GUARDIA_LOGIN_THROTTLE", "true")

LANGUAGE_CODE = "ko-kr"
LANGUAGES = [("ko", _("한국어")), ("en", _("영어"))]
# One catalogue for every app and template (Korean msgids, English translations), so
# `manage.py makemessages -l en` run from the project root writes everything there.
LOCALE_PATHS = [BASE_DIR / "governance" / "locale"]
TIME_ZONE = os.getenv("GUARDIA_TIME_ZONE", "Asia/Seoul")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = envpath("GUARDIA_STATIC_ROOT", DATA_DIR / "static")
MEDIA_ROOT = envpath("GUARDIA_MEDIA_ROOT", DATA_DIR / "media")
MEDIA_URL = "/media/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "guardia.authentication.TokenAuthentication",  # DRF's, its look-up compiled once
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "guardia.api.Pagination",  # LimitOffsetPagination with bounds
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "guardia.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GUARDiA API",
    "DESCRIPTION": "Governed, agentless operations for public-sector infrastructure.",
    "VERSION": "1.0.0",
    # Closed network: the Swagger UI is served from drf-spectacular-sidecar's local files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema maps every endpoint and parameter: callers must log in (token or session).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Several models have a "status" field; name each choice set after what it is.
    "ENUM_NAME_OVERRIDES": {
        "TaskStatusEnum": "governance.models.Status",
        "StepStatusEnum": "governance.models.StepStatus",
        # The task serializers and the intake request name these fields differently.
        "CategoryEnum": "governance.models.Category",
        "SubTypeEnum": "governance.models.SubType",
    },
    # The 400/401/403/404/409 answers shared by every endpoint (guardia/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "guardia.openapi.document_error_responses",
    ],
}

# Channels: Redis carries events from the qcluster worker to browsers on Daphne. The
# in-memory layer is process-local and serves unit tests only (GUARDIA_CHANNEL_LAYER=memory).
# The default is Redis pub/sub: each web process holds one subscriber connection, one event
# to a task crosses Redis once per process and is handed to that process's sockets in memory,
# so open sockets are bounded by memory. The list-based layer (GUARDIA_CHANNEL_LAYER=
# redis-lists) pushes a copy per socket through Redis, and its receive, group_add and
# group_discard each borrow a pooled connection (redis-py allows 100 by default): past a few
# hundred sockets it failed with "Too many connections". Pub/sub delivers at most once; a
# page that missed an event (a process restart) shows the current state on reload.
REDIS_URL = os.getenv("GUARDIA_REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL_LAYER = os.getenv("GUARDIA_CHANNEL_LAYER", "redis")
if CHANNEL_LAYER == "memory":
    CHANNEL_LAYERS: dict[str, dict[str, Any]] = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
elif CHANNEL_LAYER == "redis":
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis's pub/sub layer, unsubscribing closed sockets in batches that a
            # second cancellation cannot interrupt (guardia/channel_layer.py).
            "BACKEND": "guardia.channel_layer.PubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL}]},
        }
    }
elif CHANNEL_LAYER == "redis-lists":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, which cuts the layer's
            # blocking 5 s BZPOPMIN: every websocket consumer then died every five seconds.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    raise ImproperlyConfigured(f"GUARDIA_CHANNEL_LAYER: expected redis, redis-lists or memory, got {CHANNEL_LAYER!r}")

# django-q2: the ORM broker by default (no extra service); GUARDIA_Q_BROKER=redis moves
# the queue to the Redis at GUARDIA_REDIS_URL for multi-node clusters.
Q_CLUSTER = {
    "name": os.getenv("GUARDIA_Q_NAME", "guardia"),
    "workers": envint("GUARDIA_Q_WORKERS", 2),
    "timeout": envint("GUARDIA_Q_TIMEOUT", 3600),
    "retry": envint("GUARDIA_Q_TIMEOUT", 3600) + 60,
    "max_attempts": 1,
    "catch_up": False,
    "poll": 0.05,
    "save_limit": 1000,
    "label": "Task queue",
}
if os.getenv("GUARDIA_Q_BROKER", "orm") == "redis":
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
# A running execution's claim on its task and servers lives this long without a heartbeat
# (its worker renews it every sixth of it); the reaper recovers a task once it expired.
EXECUTION_LEASE_SECONDS = envint("GUARDIA_EXECUTION_LEASE_SECONDS", 60)
# What the reaper does with a rollout whose worker died, where the system (CMDB) does not say:
# "rollback" (restore what changed) or "resume" (go on from the step journal).
EXECUTION_RECOVERY_POLICY = os.getenv("GUARDIA_EXECUTION_RECOVERY_POLICY", "rollback")
if EXECUTION_RECOVERY_POLICY not in ("rollback", "resume"):
    raise ImproperlyConfigured("GUARDIA_EXECUTION_RECOVERY_POLICY: expected rollback or resume")
# Site gateways: `GUARDIA_GATEWAY=A manage.py qcluster` consumes only gateway A's queue (a
# django-q2 cluster name of its own, on the same broker); executions for institutions (or
# servers) assigned to A are queued there by EXECUTION_QUEUE. Unset: the central cluster,
# which also runs the schedules. Its workers write a heartbeat; silent longer than
# GATEWAY_SILENT_SECONDS raises one alarm per outage.
GATEWAY = os.getenv("GUARDIA_GATEWAY", "")
if GATEWAY and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", GATEWAY):
    raise ImproperlyConfigured(f"GUARDIA_GATEWAY: letters, digits, '-' and '_' only (32 at most), got {GATEWAY!r}")
if GATEWAY:
    Q_CLUSTER["cluster_name"] = f"{Q_CLUSTER['name']}-gw-{GATEWAY}"
EXECUTION_QUEUE = "execution.gateways.queue_for_task"
# At least a second each: a heartbeat of 0 would spin its worker.
GATEWAY_HEARTBEAT_SECONDS = envint("GUARDIA_GATEWAY_HEARTBEAT_SECONDS", 10, minimum=1)
GATEWAY_SILENT_SECONDS = envint("GUARDIA_GATEWAY_SILENT_SECONDS", 60, minimum=1)
GATEWAY_SWEEP_SECONDS = envint("GUARDIA_GATEWAY_SWEEP_SECONDS", 60, minimum=1)
# Site profiles (docs/profiles.md): scan each server with an environment schema as the first
# step of a run; rescan every server on a schedule (minutes, 0: no schedule); the drift report
# marks scans older than this many hours as stale.
PROFILE_SCAN_BEFORE_RUN = envbool("GUARDIA_PROFILE_SCAN_BEFORE_RUN", "true")
PROFILE_SCAN_INTERVAL_MINUTES = envint("GUARDIA_PROFILE_SCAN_INTERVAL_MINUTES", 1440)
PROFILE_SCAN_MAX_AGE_HOURS = envint("GUARDIA_PROFILE_SCAN_MAX_AGE_HOURS", 48)
Q_SYNC = envbool("GUARDIA_Q_SYNC", "false")
if Q_SYNC:
    Q_CLUSTER["sync"] = True

# Audit: the JSON Lines mirror and the Ed25519 checkpoint key live outside the database.
AUDIT_MIRROR_DIR = envpath("GUARDIA_AUDIT_MIRROR_DIR", DATA_DIR / "audit")
AUDIT_SIGNING_KEY_FILE = envpath("GUARDIA_AUDIT_SIGNING_KEY_FILE", DATA_DIR / "keys" / "audit_ed25519.pem")
AUDIT_CHECKPOINT_EVERY = envint("GUARDIA_AUDIT_CHECKPOINT_EVERY", 1000)

# Notification adapters: dotted paths called by governance.notify (the in-app inbox is
# the embedded default; the messenger adapters plug in here without governance
# importing intake).
NOTIFY_ADAPTERS = envlist(
    "GUARDIA_NOTIFY_ADAPTERS", "governance.notify.InboxAdapter,intake.messenger.outbox.OutboxAdapter"
)

# The messenger (intake/messenger, docs/messenger.md): the bot's Matrix homeserver and
# account (the demo starts an embedded Synapse on loopback and fills these in), the
# Mattermost/Slack-compatible webhooks' shared token and signing secret, and the outbox's
# retry schedule. Decision buttons and step-up links expire.
MATRIX_HOMESERVER = os.getenv("GUARDIA_MATRIX_HOMESERVER", "")
MATRIX_BOT_USER = os.getenv("GUARDIA_MATRIX_BOT_USER", "")
MATRIX_BOT_PASSWORD = os.getenv("GUARDIA_MATRIX_BOT_PASSWORD", "")
MATRIX_BOT_TOKEN = os.getenv("GUARDIA_MATRIX_BOT_TOKEN", "")
MATRIX_BOT_DEVICE = os.getenv("GUARDIA_MATRIX_BOT_DEVICE", "GUARDIABOT")
MESSENGER_WEBHOOK_TOKEN = os.getenv("GUARDIA_MESSENGER_WEBHOOK_TOKEN", "")
MESSENGER_SLACK_SIGNING_SECRET = os.getenv("GUARDIA_MESSENGER_SLACK_SIGNING_SECRET", "")
MESSENGER_SIGNATURE_WINDOW_SECONDS = envint("GUARDIA_MESSENGER_SIGNATURE_WINDOW_SECONDS", 300)
MESSENGER_ACTION_TTL_MINUTES = envint("GUARDIA_MESSENGER_ACTION_TTL_MINUTES", 720)
MESSENGER_STEP_UP_TTL_MINUTES = envint("GUARDIA_MESSENGER_STEP_UP_TTL_MINUTES", 15)
MESSENGER_RETRY_BASE_SECONDS = float(os.getenv("GUARDIA_MESSENGER_RETRY_BASE_SECONDS", "2"))
MESSENGER_RETRY_MAX_SECONDS = envint("GUARDIA_MESSENGER_RETRY_MAX_SECONDS", 300)
MESSENGER_WEBHOOK_TIMEOUT = envint("GUARDIA_MESSENGER_WEBHOOK_TIMEOUT", 10)
MESSENGER_POLL_SECONDS = float(os.getenv("GUARDIA_MESSENGER_POLL_SECONDS", "0.2"))

# Submission: governance refuses bad playbook parameters before anyone is asked to approve
# them, through the execution layer's validator (a dotted path keeps governance from
# importing execution). Attachments (artifacts, certificates) are capped in size.
PLAYBOOK_VALIDATOR = "execution.services.validate_parameters"
# The plan an approver sees (governance.plans): rendered by the execution layer, by name.
PLAN_RENDERER = "execution.plan.render_plan"

# The AI work agent (docs/agent.md): the command run in each CODE_FIX round's git worktree
# (one argument per word; {context}, {result}, {worktree}, {task_id}, {round} are filled in),
# by default the built-in reference agent, a deterministic stand-in. Claude Code, for example:
# GUARDIA_AGENT_COMMAND='claude -p "Read {context} and do what it asks; write {result}."
# --permission-mode acceptEdits --output-format text'. Limits, rounds and where worktrees live.
AGENT_COMMAND = shlex.split(
    os.getenv(
        "GUARDIA_AGENT_COMMAND",
        f"python3 -I {BASE_DIR / 'execution' / 'agent' / 'reference_agent.py'} "
        "--context {context} --result {result}",
    )
)
AGENT_TIMEOUT = envint("GUARDIA_AGENT_TIMEOUT", 900)
AGENT_OUTPUT_LIMIT = envint("GUARDIA_AGENT_OUTPUT_LIMIT", 1024 * 1024)
AGENT_MAX_ROUNDS = envint("GUARDIA_AGENT_MAX_ROUNDS", 3)
AGENT_WORK_ROOT = envpath("GUARDIA_AGENT_WORK_ROOT", DATA_DIR / "agent")
# The unprivileged account the agent, the build and the tests run as (scripts/setup.sh creates
# it); empty or missing: the worker's own account.
AGENT_OS_USER = os.getenv("GUARDIA_AGENT_OS_USER", "guardia-agent")
# Environment variables a real agent needs (e.g. its own API endpoint); GUARDIA_*, DJANGO_* and
# anything named like a secret of GUARDiA's are never passed.
AGENT_ENV_PASSTHROUGH = envlist("GUARDIA_AGENT_ENV_PASSTHROUGH", "")

# Intake refuses destructive requests with the same sanitizer that guards remote commands,
# reached by name (intake never imports execution). Request bodies and photos are capped.
INTAKE_COMMAND_SANITIZER = "execution.sanitizer.check"
INTAKE_MAX_BODY_MB = envint("GUARDIA_INTAKE_MAX_BODY_MB", 16)
INTAKE_MAX_PHOTO_MB = envint("GUARDIA_INTAKE_MAX_PHOTO_MB", 10)


def envurl(name: str) -> str:
    """An http(s) URL of a local service, or "" (the feature is off)."""
    value = os.getenv(name, "").strip()
    if value and not value.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{name}: expected an http(s) URL, got {value!r}")
    return value


# Optional intake backends, off unless their URL is set (a closed network runs them itself):
# an OpenAI-compatible chat-completions endpoint for the parser (vLLM, Ollama, llama.cpp
# server; the rules take over on a timeout, an error or an answer that fails the schema or
# the CMDB) and an OpenAI-compatible /v1/audio/transcriptions endpoint for voice memos.
INTAKE_LLM_URL = envurl("GUARDIA_INTAKE_LLM_URL")
INTAKE_LLM_MODEL = os.getenv("GUARDIA_INTAKE_LLM_MODEL", "")
INTAKE_LLM_API_KEY = os.getenv("GUARDIA_INTAKE_LLM_API_KEY", "")
INTAKE_LLM_TIMEOUT_MS = envint("GUARDIA_INTAKE_LLM_TIMEOUT_MS", 5000)
INTAKE_STT_URL = envurl("GUARDIA_INTAKE_STT_URL")
INTAKE_STT_MODEL = os.getenv("GUARDIA_INTAKE_STT_MODEL", "whisper-1")
INTAKE_STT_TIMEOUT_MS = envint("GUARDIA_INTAKE_STT_TIMEOUT_MS", 30000)
INTAKE_MAX_AUDIO_MB = envint("GUARDIA_INTAKE_MAX_AUDIO_MB", 10)
GUARDIA_MAX_ATTACHMENT_MB = envint("GUARDIA_MAX_ATTACHMENT_MB", 512)

# SSH: host keys are pinned in the CMDB; tests may relax nothing here.
SSH_CONNECT_TIMEOUT = envint("GUARDIA_SSH_CONNECT_TIMEOUT", 10)
SSH_COMMAND_TIMEOUT = envint("GUARDIA_SSH_COMMAND_TIMEOUT", 300)
# A Linux server's steps run through one supervised remote shell instead of a channel each
# (execution.transport.SUPERVISOR; a deploy's or a restart's from the first command, the
# others' from the second): fewer round trips, the same records. On by default; false gives
# every step a channel of its own (docs/execution.md "The step supervisor").
SSH_STEP_SESSION = envbool("GUARDIA_SSH_STEP_SESSION", "true")
TESTBED_DIR = envpath("GUARDIA_TESTBED_DIR", DATA_DIR / "testbed")

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = envbool("GUARDIA_SSL_REDIRECT", "true")
    SECURE_HSTS_SECONDS = envint("GUARDIA_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "cmdb.vault.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": os.getenv("GUARDIA_LOG_LEVEL", "INFO")},
    "loggers": {
        "paramiko": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
    },
}
