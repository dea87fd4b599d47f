"""Django settings for keygov.

Settings come only from the environment (documented in ``.env.example``). With nothing set,
keygov runs on the embedded default: a SQLite file under ``KEYGOV_DATA_DIR`` and tasks run
in-process. ``DATABASE_URL`` and ``REDIS_URL`` switch to Postgres and real Celery workers.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from keygov.cron import parse_cron
from keygov.env import env_bool, env_choice, env_int, env_list, env_match, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("KEYGOV_DATA_DIR") or BASE_DIR / "var")

DEBUG = env_bool("KEYGOV_DEBUG", False)


def _data_dir() -> Path:
    """The data directory, created when missing (the embedded default keeps its files there)."""
    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"KEYGOV_DATA_DIR={str(DATA_DIR)!r} is not a directory keygov can create "
            f"({exc.strerror})"
        ) from None
    return DATA_DIR


def _secret_key() -> str:
    """KEYGOV_SECRET_KEY, or a random key kept in the data directory for the embedded default."""
    key = env_str("KEYGOV_SECRET_KEY")
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured("KEYGOV_SECRET_KEY must be at least 32 characters long")
        return key
    path = _data_dir() / "secret_key"
    try:
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(50))
        return path.read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"KEYGOV_DATA_DIR={str(DATA_DIR)!r}: cannot keep the secret key there "
            f"({exc.strerror}); make it writable or set KEYGOV_SECRET_KEY"
        ) from None


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("KEYGOV_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("KEYGOV_CSRF_TRUSTED_ORIGINS")

# --- Security (docs/security.md) --------------------------------------------------------------

# keygov is reached over HTTPS (a TLS proxy in front of it): HSTS, the redirect to https://,
# Secure cookies under __Host- names. Off: the embedded default on http://127.0.0.1.
KEYGOV_HTTPS = env_bool("KEYGOV_HTTPS", False)
if KEYGOV_HTTPS:
    SECURE_SSL_REDIRECT = True
    # Health checks and metrics scrapes come over plain HTTP from inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^metrics/?$"]
    # The header the TLS proxy sets to tell https from http ("X-Forwarded-Proto: https"); set it
    # empty when gunicorn itself holds the certificate. The proxy must overwrite that header,
    # never pass on a client's.
    _proxy_header = env_str("KEYGOV_PROXY_SSL_HEADER", "X-Forwarded-Proto")
    if not re.fullmatch(r"[A-Za-z0-9-]*", _proxy_header):
        raise ImproperlyConfigured(
            f"KEYGOV_PROXY_SSL_HEADER={_proxy_header!r} is not an HTTP header name"
        )
    if _proxy_header:
        SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
    SECURE_HSTS_SECONDS = env_int("KEYGOV_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("KEYGOV_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("KEYGOV_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Only a registrable domain can be preloaded, by its owner, for all its hosts: not a
        # decision for keygov on its host name, so the check's advice does not apply here.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    # __Host-: the browser keeps such a cookie only if Secure, Path=/ and without a Domain, so
    # no other host of the domain can set or shadow keygov's session or CSRF cookie.
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
# Sign-out after this long without a request, and this long after signing in whatever happens.
KEYGOV_SESSION_IDLE_MINUTES = env_int("KEYGOV_SESSION_IDLE_MINUTES", 30, minimum=1)
KEYGOV_SESSION_MAX_HOURS = env_int("KEYGOV_SESSION_MAX_HOURS", 12, minimum=1)
# keygov's middleware enforces both; the cookie and the stored session outlive neither.
SESSION_COOKIE_AGE = KEYGOV_SESSION_MAX_HOURS * 3600
# Sign-ins refused for a username from an address after this many failures, until this many
# minutes have passed since the last failure.
KEYGOV_LOGIN_FAILURE_LIMIT = env_int("KEYGOV_LOGIN_FAILURE_LIMIT", 5, minimum=1)
KEYGOV_LOGIN_LOCKOUT_MINUTES = env_int("KEYGOV_LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
# Behind a proxy: the client's address is the last X-Forwarded-For entry (the proxy must append
# to that header). Off: the address the connection comes from.
KEYGOV_TRUST_X_FORWARDED_FOR = env_bool("KEYGOV_TRUST_X_FORWARDED_FOR", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_filters",
    "django_tables2",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "inventory",
    # The security log and the login rate limit (keygov/apps.py).
    "keygov.apps.KeygovConfig",
    "inventory.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files, answered before anything else runs (docs/security.md).
    "keygov.staticfiles.StaticFilesMiddleware",
    "keygov.security.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "keygov.security.SessionTimeoutMiddleware",
    "keygov.security.LoginThrottleMiddleware",
    "keygov.security.PrivateResponseMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "keygov.urls"
WSGI_APPLICATION = "keygov.wsgi.application"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# --- Single sign-on (docs/sso.md) -----------------------------------------------------------

# OpenID Connect sign-in with the company's identity provider, on when KEYGOV_OIDC_ISSUER is set.
# Local accounts keep working: Django's own backend is asked first.
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
# Client secrets and tokens travel to these URLs: https://, or http:// on this machine only.
_OIDC_URL = r"https://\S+|http://(127\.0\.0\.1|localhost)(:\d+)?(/\S*)?"
_OIDC_URL_WHAT = "an https:// URL (required with KEYGOV_OIDC_ISSUER)"
KEYGOV_OIDC_ISSUER = env_match("KEYGOV_OIDC_ISSUER", "", f"({_OIDC_URL})?", "an https:// URL")
KEYGOV_OIDC_ENABLED = bool(KEYGOV_OIDC_ISSUER)
KEYGOV_OIDC_ROLES = ("viewer", "owner", "approver", "admin")


def _oidc_role_map(raw: str) -> dict[str, list[str]]:
    """KEYGOV_OIDC_ROLE_MAP, ``group=role,...``: the identity provider's group → keygov roles."""
    mapping: dict[str, set[str]] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        group, _, role = item.rpartition("=")  # a group name may itself hold "="
        if not group.strip() or role.strip().lower() not in KEYGOV_OIDC_ROLES:
            raise ImproperlyConfigured(
                f"KEYGOV_OIDC_ROLE_MAP: {item.strip()!r} is not group=role with a role of "
                f"{', '.join(KEYGOV_OIDC_ROLES)}"
            )
        mapping.setdefault(group.strip(), set()).add(role.strip().lower())
    if not mapping:
        raise ImproperlyConfigured(
            "KEYGOV_OIDC_ROLE_MAP must map at least one group to a role with KEYGOV_OIDC_ISSUER, "
            "e.g. keygov-viewers=viewer,keygov-admins=admin"
        )
    return {group: sorted(roles) for group, roles in mapping.items()}


if KEYGOV_OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("keygov.oidc.KeygovOIDCBackend")
    OIDC_RP_CLIENT_ID = env_str("KEYGOV_OIDC_CLIENT_ID")
    OIDC_RP_CLIENT_SECRET = env_str("KEYGOV_OIDC_CLIENT_SECRET")
    for _name, _value in (
        ("KEYGOV_OIDC_CLIENT_ID", OIDC_RP_CLIENT_ID),
        ("KEYGOV_OIDC_CLIENT_SECRET", OIDC_RP_CLIENT_SECRET),
    ):
        if not _value:
            raise ImproperlyConfigured(f"{_name} must be set with KEYGOV_OIDC_ISSUER")
    OIDC_OP_AUTHORIZATION_ENDPOINT = env_match(
        "KEYGOV_OIDC_AUTHORIZATION_ENDPOINT", "", _OIDC_URL, _OIDC_URL_WHAT
    )
    OIDC_OP_TOKEN_ENDPOINT = env_match("KEYGOV_OIDC_TOKEN_ENDPOINT", "", _OIDC_URL, _OIDC_URL_WHAT)
    OIDC_OP_USER_ENDPOINT = env_match(
        "KEYGOV_OIDC_USERINFO_ENDPOINT", "", _OIDC_URL, _OIDC_URL_WHAT
    )
    OIDC_RP_SIGN_ALGO = env_choice(
        "KEYGOV_OIDC_SIGN_ALGO", "RS256", ("RS256", "RS384", "RS512", "ES256", "ES384", "HS256")
    )
    # HS256: the ID token is signed with the client secret, no key set to fetch.
    if OIDC_RP_SIGN_ALGO != "HS256":
        OIDC_OP_JWKS_ENDPOINT = env_match("KEYGOV_OIDC_JWKS_URI", "", _OIDC_URL, _OIDC_URL_WHAT)
    OIDC_RP_SCOPES = env_match(
        "KEYGOV_OIDC_SCOPES",
        "openid email profile groups",
        r"(\S+ )*openid( \S+)*",
        "a space-separated list of scopes that includes openid",
    )
    OIDC_USE_PKCE = True
    OIDC_TIMEOUT = 10
    LOGIN_REDIRECT_URL_FAILURE = LOGIN_URL
    KEYGOV_OIDC_GROUPS_CLAIM = env_match(
        "KEYGOV_OIDC_GROUPS_CLAIM", "groups", r"[\w.:/-]+", "a claim name such as groups"
    )
    KEYGOV_OIDC_ROLE_MAP = _oidc_role_map(env_str("KEYGOV_OIDC_ROLE_MAP"))
    KEYGOV_OIDC_PROVIDER_NAME = env_str("KEYGOV_OIDC_PROVIDER_NAME", "single sign-on")[:60]

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
                "inventory.context_processors.keygov",
            ],
        },
    },
]


def _database() -> dict:
    url = env_str("DATABASE_URL")
    if not url:
        url = f"sqlite:///{_data_dir() / 'keygov.sqlite3'}"
    try:
        config = dj_database_url.parse(url, conn_max_age=env_int("KEYGOV_DB_CONN_MAX_AGE", 60))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Several threads (runserver, in-process tasks) write to one file: wait, don't fail.
        config["OPTIONS"] = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
        config["CONN_MAX_AGE"] = 0
    elif config["ENGINE"] == "django.db.backends.postgresql":
        config["CONN_HEALTH_CHECKS"] = True
        options = config.setdefault("OPTIONS", {})
        options.setdefault("connect_timeout", 5)
        # No keygov query gains from JIT compilation, and those with per-row subqueries over
        # many rows pay hundreds of milliseconds for it (docs/benchmarks.md, issue 4).
        options.setdefault("options", "-c jit=off")
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
# whitenoise serves the static files from the app. With KEYGOV_STATIC_MANIFEST on (the Docker
# image, after `collectstatic`): compressed copies under hashed names, cached for a year. Off (the
# embedded default, the tests): straight from the source folders, no collectstatic needed.
KEYGOV_STATIC_MANIFEST = env_bool("KEYGOV_STATIC_MANIFEST", False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if KEYGOV_STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not KEYGOV_STATIC_MANIFEST

DJANGO_TABLES2_TEMPLATE = "generic/table.html"
DJANGO_TABLES2_TABLE_ATTRS = {"class": "table table-sm table-hover align-middle mb-0"}

# --- Operations (docs/operations.md) -------------------------------------------------------------

# plain: "time level logger message" lines; json: one JSON object a line (keygov/logging.py).
KEYGOV_LOG_FORMAT = env_choice("KEYGOV_LOG_FORMAT", "plain", ("plain", "json"))
# /health/ answers 503 when the newest complete snapshot is older than this many seconds; 0 (the
# default): twice the longest gap between two runs of KEYGOV_COLLECT_CRON (12 h for every 6 h).
KEYGOV_HEALTH_MAX_SNAPSHOT_AGE = env_int("KEYGOV_HEALTH_MAX_SNAPSHOT_AGE", 0, minimum=0)
# The bearer token Prometheus presents to scrape /metrics. Unset: /metrics answers 404.
KEYGOV_METRICS_TOKEN = env_str("KEYGOV_METRICS_TOKEN")
if KEYGOV_METRICS_TOKEN and len(KEYGOV_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("KEYGOV_METRICS_TOKEN must be at least 16 characters long")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "keygov.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": KEYGOV_LOG_FORMAT}},
    "root": {
        "handlers": ["console"],
        "level": env_choice(
            "KEYGOV_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        ),
    },
    "loggers": {
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

# --- REST API (/api/, docs/api.md) ----------------------------------------------------------

REST_FRAMEWORK = {
    # A token first: a request without credentials gets 401 with WWW-Authenticate: Bearer.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "inventory.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Deny by default: every view needs a role (viewer unless the view says more).
    "DEFAULT_PERMISSION_CLASSES": ["inventory.api.permissions.HasRole"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "inventory.api.pagination.KeysetPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "inventory.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "keygov API",
    "DESCRIPTION": "Read access to keygov's accounts, keys, findings, exceptions, KPIs and key "
    "requests; filing key requests and marking migrations. See docs/api.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["inventory.api.permissions.HasRole"],
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "inventory.api.schema.add_error_responses",
    ],
    # The Swagger UI's assets come from the drf-spectacular-sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "KeyStatusEnum": "inventory.choices.KeyStatus",
        "KeyStateEnum": "inventory.api.serializers.KEY_STATES",
        "MigrationStatusEnum": "inventory.choices.MigrationStatus",
        "ExceptionStatusEnum": "inventory.choices.ExceptionStatus",
        "KeyRequestStatusEnum": "inventory.models.requests.KeyRequestStatus",
    },
}

# --- keygov ---------------------------------------------------------------------------------

# User tags that name a key's owner, in order of preference.
KEYGOV_OWNER_TAG_KEYS = env_list(
    "KEYGOV_OWNER_TAG_KEYS", "owner,Owner,OwnerEmail,owner_email,OwnerContact"
)
# Region for the STS and IAM endpoints (IAM is global; STS is regional).
KEYGOV_AWS_REGION = env_match(
    "KEYGOV_AWS_REGION", "us-east-1", r"[a-z]{2}(-[a-z]+)+-\d", "an AWS region such as us-east-1"
)
# Attempts per AWS call, first try included, in botocore's "standard" retry mode.
KEYGOV_AWS_MAX_ATTEMPTS = env_int("KEYGOV_AWS_MAX_ATTEMPTS", 10, minimum=1)
# Concurrent ListAccessKeys calls within one account. IAM throttles per account: keep it small.
KEYGOV_AWS_CONCURRENCY = env_int("KEYGOV_AWS_CONCURRENCY", 4, minimum=1)
# How long to wait for AWS to generate a credential report.
KEYGOV_REPORT_TIMEOUT = env_int("KEYGOV_REPORT_TIMEOUT", 300, minimum=1)
# AssumeRole's RoleSessionName: 2 to 64 of letters, digits and +=,.@_-
KEYGOV_ASSUME_ROLE_SESSION_NAME = env_match(
    "KEYGOV_ASSUME_ROLE_SESSION_NAME",
    "keygov",
    r"[\w+=,.@-]{2,64}",
    "a role session name (2 to 64 of letters, digits and +=,.@_-)",
)

# --- Key requests ---------------------------------------------------------------------------

# Name of the Secrets Manager secret that receives an approved key's secret, in the key's account.
# Placeholders {account_id}, {user_name}, {request_id}; {request_id} keeps two requests apart.
KEYGOV_SECRET_NAME_TEMPLATE = env_str(
    "KEYGOV_SECRET_NAME_TEMPLATE", "keygov/{account_id}/{user_name}/{request_id}"
)
try:
    _secret_sample = KEYGOV_SECRET_NAME_TEMPLATE.format(
        account_id="123456789012", user_name="u", request_id="1"
    )
except (KeyError, IndexError, ValueError) as exc:
    raise ImproperlyConfigured(
        f"KEYGOV_SECRET_NAME_TEMPLATE={KEYGOV_SECRET_NAME_TEMPLATE!r} is not a valid template "
        f"({exc!r}): use only {{account_id}}, {{user_name}} and {{request_id}}"
    ) from None
if "{request_id}" not in KEYGOV_SECRET_NAME_TEMPLATE:
    raise ImproperlyConfigured(
        "KEYGOV_SECRET_NAME_TEMPLATE must contain {request_id}: each request gets its own secret"
    )
# Region of the Secrets Manager secrets (empty: KEYGOV_AWS_REGION).
_secret_region = env_match(
    "KEYGOV_SECRET_REGION", "", r"([a-z]{2}(-[a-z]+)+-\d)?", "an AWS region such as us-east-1"
)
KEYGOV_SECRET_REGION = _secret_region or KEYGOV_AWS_REGION

# --- E-mail, alerts and key usage -----------------------------------------------------------

# SMTP when KEYGOV_SMTP_HOST is set; otherwise messages are printed on the console (embedded default).
KEYGOV_SMTP_HOST = env_str("KEYGOV_SMTP_HOST")
if KEYGOV_SMTP_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = KEYGOV_SMTP_HOST
    EMAIL_PORT = env_int("KEYGOV_SMTP_PORT", 587, minimum=1, maximum=65535)
    EMAIL_HOST_USER = env_str("KEYGOV_SMTP_USER")
    EMAIL_HOST_PASSWORD = env_str("KEYGOV_SMTP_PASSWORD")
    _smtp_security = env_choice("KEYGOV_SMTP_SECURITY", "starttls", ("starttls", "tls", "none"))
    EMAIL_USE_TLS = _smtp_security == "starttls"
    EMAIL_USE_SSL = _smtp_security == "tls"
    EMAIL_TIMEOUT = 20
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("KEYGOV_FROM_EMAIL", "keygov <keygov@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Where people reach keygov: the links in e-mails start with it.
KEYGOV_BASE_URL = env_match(
    "KEYGOV_BASE_URL", "http://127.0.0.1:8000", r"https?://[^\s/]+(/\S*)?", "an http(s):// URL"
)
# Optional Slack-compatible incoming webhook (https://): a one-line summary of each digest and
# transition is posted to it.
KEYGOV_SLACK_WEBHOOK_URL = env_str("KEYGOV_SLACK_WEBHOOK_URL")
if KEYGOV_SLACK_WEBHOOK_URL and not KEYGOV_SLACK_WEBHOOK_URL.startswith("https://"):
    raise ImproperlyConfigured("KEYGOV_SLACK_WEBHOOK_URL must be an https:// URL")
# Owner alerts: days before a key's deadline when its owner is told (each milestone once), and
# every how many days an overdue key is recalled (0: only once).
KEYGOV_ALERT_DAYS = env_list("KEYGOV_ALERT_DAYS", "14,7")
try:
    KEYGOV_ALERT_DAYS = sorted({int(day) for day in KEYGOV_ALERT_DAYS}, reverse=True)
except ValueError:
    raise ImproperlyConfigured(
        f"KEYGOV_ALERT_DAYS={','.join(KEYGOV_ALERT_DAYS)!r} is not a list of days, e.g. 14,7"
    ) from None
if any(day < 1 for day in KEYGOV_ALERT_DAYS):
    raise ImproperlyConfigured("KEYGOV_ALERT_DAYS: every day must be at least 1")
KEYGOV_ALERT_OVERDUE_EVERY_DAYS = env_int("KEYGOV_ALERT_OVERDUE_EVERY_DAYS", 7, minimum=0)
# Regions whose CloudTrail event history "where is it used" searches (plus the key's last-used
# region from the credential report). IAM and STS record their events in us-east-1.
KEYGOV_CLOUDTRAIL_REGIONS = env_list("KEYGOV_CLOUDTRAIL_REGIONS", "us-east-1")
for _region in KEYGOV_CLOUDTRAIL_REGIONS:
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", _region):
        raise ImproperlyConfigured(
            f"KEYGOV_CLOUDTRAIL_REGIONS: {_region!r} is not an AWS region such as us-east-1"
        )

# --- Celery ---------------------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
# The login rate limit's counts (keygov/security.py) live in Redis when there is one, so that all
# gunicorn workers share them; short timeouts, because a login must not wait on a hung Redis (the
# limit then fails open). The default cache stays in each process: pages must not need Redis, and
# clearing it must never empty the Celery broker's database.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "keygov-throttle",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"}
    ),
}
KEYGOV_COLLECT_CRON = env_str("KEYGOV_COLLECT_CRON", "0 */6 * * *")
KEYGOV_COLLECT_SCHEDULE = parse_cron("KEYGOV_COLLECT_CRON", KEYGOV_COLLECT_CRON)
# Hard limit of one account's collection; the account's collection lease lasts a little longer,
# and the broker redelivers an unacknowledged task only after a longer visibility timeout.
# At most an hour: the read role's session (AssumeRole DurationSeconds) lasts one hour.
KEYGOV_COLLECT_TIME_LIMIT = env_int("KEYGOV_COLLECT_TIME_LIMIT", 1800, minimum=60, maximum=3600)
KEYGOV_COLLECT_LEASE = KEYGOV_COLLECT_TIME_LIMIT + 60
KEYGOV_BROKER_VISIBILITY_TIMEOUT = env_int(
    "KEYGOV_BROKER_VISIBILITY_TIMEOUT", 2 * KEYGOV_COLLECT_TIME_LIMIT, minimum=60
)
if KEYGOV_BROKER_VISIBILITY_TIMEOUT <= KEYGOV_COLLECT_LEASE:
    raise ImproperlyConfigured(
        "KEYGOV_BROKER_VISIBILITY_TIMEOUT must exceed KEYGOV_COLLECT_TIME_LIMIT + 60 s, or the "
        "broker would hand a running collection to a second worker"
    )

if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} is not a redis:// URL")
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    # Embedded default: no broker, every task runs in the calling process.
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = KEYGOV_COLLECT_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = KEYGOV_COLLECT_TIME_LIMIT - 30
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A hung or absent Redis must not hang a web request: short socket timeouts, few publish retries.
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": KEYGOV_BROKER_VISIBILITY_TIMEOUT,
    "socket_timeout": 3,  # a publish to a hung Redis gives up after 3 s ("Collect now": < 5 s)
    "socket_connect_timeout": 3,
    "max_retries": 1,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
KEYGOV_EVALUATE_CRON = env_str("KEYGOV_EVALUATE_CRON", "15 0 * * *")
CELERY_BEAT_SCHEDULE = {
    "collect-all-accounts": {
        "task": "inventory.tasks.collect_all_accounts",
        "schedule": KEYGOV_COLLECT_SCHEDULE,
    },
    # Keys age and exceptions expire between snapshots: judge everything again daily.
    "evaluate-all-accounts": {
        "task": "inventory.tasks.evaluate_all_accounts",
        "schedule": parse_cron("KEYGOV_EVALUATE_CRON", KEYGOV_EVALUATE_CRON),
    },
}
# Owner and approver digests, after the daily evaluation has judged the keys.
KEYGOV_ALERT_CRON = env_str("KEYGOV_ALERT_CRON", "0 7 * * *")
CELERY_BEAT_SCHEDULE["send-owner-alerts"] = {
    "task": "inventory.tasks.send_owner_alerts",
    "schedule": parse_cron("KEYGOV_ALERT_CRON", KEYGOV_ALERT_CRON),
}
