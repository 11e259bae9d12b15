"""Settings for the Pod Deployment Portal: one module, configured from the environment.

Every variable is documented in README.md ("Configuration"). Production is the default:
``DJANGO_DEBUG`` is off and ``DJANGO_SECRET_KEY`` must be set.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

from accounts.groups import parse_group_map
from deployments.podspec import DEFAULT_INSTANCE_TYPES

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random value, or set DJANGO_DEBUG=true "
            "for local development."
        )
    SECRET_KEY = "insecure-development-key-only-used-when-DJANGO_DEBUG-is-true"  # noqa: S105

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "csp",
    "rest_framework",
    "drf_spectacular",
    # Sign in with GitHub (accounts/github.py): python-social-auth's accounts table (UserSocialAuth).
    "social_django",
    "deployments",
    "accounts",
    "api",
]

MIDDLEWARE = [
    # First, so every log line of the request (and the response header) carries its id.
    "portal.logging.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Early, so every response gets the policy: error pages, static files, axes' lockout page.
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # Django's, reading the user (and permissions) with the session: accounts/sessions.py.
    "accounts.sessions.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "deployments.middleware.GitHubErrorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes requires: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses any sign-in of a locked-out username and address before a password is checked.
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend, with a user's permissions read in one query (accounts/backends.py).
    "accounts.backends.PortalModelBackend",
    # Single sign-on with the company's OpenID Provider (accounts/oidc.py); inert without OIDC_ISSUER.
    "accounts.oidc.PortalOIDCBackend",
    # Sign in with GitHub (accounts/github.py); inert without GITHUB_OAUTH_CLIENT_ID.
    "accounts.github.PortalGitHubBackend",
]

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
                "deployments.views.portal_context",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# A worker keeps its connection between requests (a new PostgreSQL connection cost ~5 ms a
# request), checked before reuse after an error or a restart of the server (issue 18).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with a health check that costs no round trip (portal/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "portal.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent gunicorn workers write the same file: wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    # Write-ahead log, synced at checkpoints: a commit is one append instead of several fsyncs,
    # and readers do not wait for a writer. Run on every new connection (Django >= 5.1's
    # init_command: https://docs.djangoproject.com/en/5.2/ref/databases/#setting-pragma-options).
    # SQLITE_INIT_COMMAND overrides it ("": none; WAL, once set, stays in the file until another
    # journal_mode is set, e.g. "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL").
    wal = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"
    init_command = env.str("SQLITE_INIT_COMMAND", default=wal)
    if init_command:
        DATABASES["default"]["OPTIONS"]["init_command"] = init_command
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    # The spec-blob cache and the health probe are shared across workers through the database.
    "default": {
        # Django's, with set_many written in bulk (portal/cache.py).
        "BACKEND": "portal.cache.DatabaseCache",
        "LOCATION": "portal_cache",
        # One entry per spec blob: the default 300 would evict them and refetch from GitHub.
        "OPTIONS": {"MAX_ENTRIES": 1_000_000},
    },
    # Rendered page fragments, per process: cheap to rebuild, keyed by what they show.
    # A page of the pods page is ~50 KB: a few dozen pages, searches and versions at most per worker.
    "fragments": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "fragments",
        "OPTIONS": {"MAX_ENTRIES": 64},
    },
    # Whole pods pages, per process and person (deployments.views._render_reused), apart from
    # the fragments so that many people's pages never push the shared fragments out.
    "pages": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "pages",
        "OPTIONS": {"MAX_ENTRIES": 32},
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "pod_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (production defaults; each can be relaxed for a plain-HTTP trusted network) ----
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^health(/live)?$"]
SESSION_COOKIE_HTTPONLY = True
# Django's database sessions, read with their user and permissions in one statement.
SESSION_ENGINE = "accounts.sessions"
X_FRAME_OPTIONS = "DENY"
if not SECURE_HSTS_PRELOAD:
    # Preloading commits the whole domain to HTTPS in browsers: the domain owner's decision, made
    # with DJANGO_SECURE_HSTS_PRELOAD=true, not a default. Without it `check --deploy` is clean.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
# Every page, the admin included, runs only the portal's own scripts and styles: nothing inline,
# nothing from elsewhere, and it cannot be framed or post a form to another site.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "style-src": [csp.SELF],
        "img-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "frame-ancestors": [csp.NONE],
        "form-action": [csp.SELF],
    }
}

# --- Sign-in throttling (django-axes) --------------------------------------------------------
# LOGIN_FAILURE_LIMIT wrong passwords for one username from one address lock that pair out for
# LOGIN_LOCKOUT_MINUTES (every attempt while locked restarts the wait); a success clears the
# count. An administrator unlocks by deleting the pair's "access attempt" in the admin, or with
# `manage.py axes_reset_username <name>`.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_ENABLE_ACCESS_FAILURE_LOG = True
# The client's address is the connection's unless TRUSTED_PROXY_COUNT reverse proxies sit in
# front and each appends the address it saw to X-Forwarded-For; then it is the address the
# first proxy saw. Trusting the header without such proxies would let a client pick its address
# (and so its own lockout bucket).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
    # ipware counts the proxies listed in the header: the last proxy's own address is not there.
    AXES_IPWARE_PROXY_COUNT = TRUSTED_PROXY_COUNT - 1
    # A client-sent X-Forwarded-For arrives prefixed to the proxies' entries: read the chain from
    # the right (a minimum count, not an exact one) instead of discarding it.
    IPWARE_STRICT = False
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

# --- GitHub ------------------------------------------------------------------------------------
GH_TOKEN = env.str("GH_TOKEN", default="")
GH_REPO = env.str("GH_REPO", default="")
GITHUB_API_URL = env.str("GITHUB_API_URL", default="https://api.github.com").rstrip("/")
GITHUB_APP_ID = env.str("GITHUB_APP_ID", default="")
GITHUB_APP_PRIVATE_KEY = env.str("GITHUB_APP_PRIVATE_KEY", default="", multiline=True)
if not GITHUB_APP_PRIVATE_KEY and env.str("GITHUB_APP_PRIVATE_KEY_PATH", default=""):
    GITHUB_APP_PRIVATE_KEY = Path(env.str("GITHUB_APP_PRIVATE_KEY_PATH")).read_text()
GITHUB_APP_INSTALLATION_ID = env.str("GITHUB_APP_INSTALLATION_ID", default="")
GITHUB_WEBHOOK_SECRET = env.str("GITHUB_WEBHOOK_SECRET", default="")
GITHUB_TIMEOUT = env.int("GITHUB_TIMEOUT", default=10)
# How long a deploy looks for its run when the dispatch answer did not name it (GHES <= 3.20).
GITHUB_RUN_LOOKUP_SECONDS = env.float("GITHUB_RUN_LOOKUP_SECONDS", default=2.5)
SPECS_PATH = env.str("SPECS_PATH", default="pods").strip("/")
DEPLOY_WORKFLOW = env.str("DEPLOY_WORKFLOW", default="deploy-pod.yml")
DEPLOY_REF = env.str("DEPLOY_REF", default="main")
ALLOWED_INSTANCE_TYPES = env.list("ALLOWED_INSTANCE_TYPES", default=list(DEFAULT_INSTANCE_TYPES))
# How long a checked pod listing is served without asking GitHub again (0: ask on every view).
INVENTORY_FRESH_SECONDS = env.int("INVENTORY_FRESH_SECONDS", default=5)
# A worker reuses the pods page's reads (the requests' stamp, the listing's cache entry) this
# long: under load, a few statements a second instead of one per view (deployments.live).
PODS_PAGE_READS_SECONDS = env.float("PODS_PAGE_READS_SECONDS", default=0.1)
# A cold pod listing stops reading specs while fewer requests than this are left in GitHub's
# rate limit, keeping them for dispatches and run syncs; the rest is read on a later view.
INVENTORY_RATE_LIMIT_RESERVE = env.int("INVENTORY_RATE_LIMIT_RESERVE", default=200)
# A cold (or much changed) pod listing reads the new specs' text in bulk through GitHub's GraphQL
# API, ~1,000 blobs a query, instead of one REST call each; false: one REST call per spec (README
# "Performance"). A failed GraphQL answer falls back to the REST calls by itself.
INVENTORY_GRAPHQL = env.bool("INVENTORY_GRAPHQL", default=True)
# How old /health's GitHub report may get before a background probe refreshes it (one per period).
HEALTH_CACHE_SECONDS = env.int("HEALTH_CACHE_SECONDS", default=30)
# A monitor presenting "Authorization: Bearer <HEALTH_TOKEN>" sees /health's details (empty: login only).
HEALTH_TOKEN = env.str("HEALTH_TOKEN", default="")
# After a dispatch whose answer did not name its run, the request page looks for the run at
# most this often (per request, across workers) until it appears.
RUN_LOOKUP_INTERVAL_SECONDS = env.float("RUN_LOOKUP_INTERVAL_SECONDS", default=5.0)
# A request still active after this long is closed as "stale" by sync_runs.
RUN_STALE_AFTER_MINUTES = env.int("RUN_STALE_AFTER_MINUTES", default=120)
# Set by `make run` when it starts the GitHub emulator: shows the sandbox banner.
# Review before apply: every pod is planned first, then applied by a second run once someone
# presses Apply; environments matching APPROVAL_REQUIRED_ENVIRONMENTS (names or globs) need an
# Approver other than the requester. AUTO_APPLY_ENVIRONMENTS plan and apply in one run.
APPROVAL_REQUIRED_ENVIRONMENTS = env.list("APPROVAL_REQUIRED_ENVIRONMENTS", default=["prod", "production"])
AUTO_APPLY_ENVIRONMENTS = env.list("AUTO_APPLY_ENVIRONMENTS", default=[])
# A plan (or an approval) not applied within this many minutes expires and frees the pod.
PLAN_TTL_MINUTES = env.int("PLAN_TTL_MINUTES", default=60)

# --- notifications (deployments/notify.py) ---
# Apprise URLs, comma separated (a comma inside one URL as %2C); empty: no notifications. E.g.
# slack://T…/B…/X…, workflows://host:443/ID/SIG (Microsoft Teams), mailtos://user:pass@host?to=…,
# hmacs://host/path (the portal's signed JSON webhook, X-Portal-Signature-256).
NOTIFY_URLS = env.list("NOTIFY_URLS", default=[])
# The HMAC-SHA256 key of hmac:// and hmacs:// webhooks; they send nothing without one.
NOTIFY_SIGNING_SECRET = env.str("NOTIFY_SIGNING_SECRET", default="")
# Each notifier's connect and read timeout. Notifications are sent after the commit, in the
# background: a slow notifier never delays a deployment, it only holds one of the senders.
NOTIFY_TIMEOUT_SECONDS = env.float("NOTIFY_TIMEOUT_SECONDS", default=5.0)
# The portal's address as people reach it (e.g. https://deploy.example.com): notifications
# link to the request page under it. Empty: they carry no link.
PORTAL_URL = env.str("PORTAL_URL", default="")
# --- end of notifications ---

PORTAL_SANDBOX = env.bool("PORTAL_SANDBOX", default=False)

# --- single sign-on (accounts/oidc.py, mozilla-django-oidc) ---
# The OpenID Provider's issuer (e.g. https://company.okta.com); its endpoints come from the
# discovery document (OIDC_DISCOVERY_URL, default <issuer>/.well-known/openid-configuration).
# With OIDC_ISSUER and OIDC_CLIENT_ID set the login page leads with the provider; local
# accounts still sign in with a password (break-glass admin).
OIDC_ISSUER = env.str("OIDC_ISSUER", default="").rstrip("/")
OIDC_DISCOVERY_URL = env.str("OIDC_DISCOVERY_URL", default="")
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
OIDC_RP_SCOPES = env.str("OIDC_SCOPES", default="openid email profile")
OIDC_RP_SIGN_ALGO = env.str("OIDC_SIGN_ALGO", default="RS256")
# The claim (ID token or UserInfo) listing the person's groups, and how they map to the
# portal's groups at every sign-in: "idp-group=Deployers,other-group=Approvers,admins=staff".
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
OIDC_GROUP_MAP = env.str("OIDC_GROUP_MAP", default="")
parse_group_map(OIDC_GROUP_MAP, "OIDC_GROUP_MAP")  # malformed: a clear error now, not at sign-in
# Shown on the login button: "Sign in with <name>".
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="your company account")
OIDC_TIMEOUT = env.int("OIDC_TIMEOUT", default=10)
OIDC_USE_PKCE = True
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
# Axes does not count the provider's callback (no username: it would lock out an address).
AXES_WHITELIST_CALLABLE = "accounts.oidc.axes_exempt"
# --- end of single sign-on ---

# --- sign in with GitHub (accounts/github.py, social-auth-app-django) ---
# An OAuth app (GitHub: Settings → Developer settings → OAuth Apps) whose callback URL is
# https://<portal>/auth/complete/github/. Only members of GITHUB_OAUTH_ORG may sign in; their
# teams map to the portal's groups at every sign-in: "team-slug=Deployers,leads=Approvers,admins=staff".
# The GitHub host is GITHUB_API_URL's (GitHub Enterprise Server too); GITHUB_OAUTH_URL is the
# web host the browser signs in at, if it is not derived from it.
GITHUB_OAUTH_CLIENT_ID = env.str("GITHUB_OAUTH_CLIENT_ID", default="")
GITHUB_OAUTH_CLIENT_SECRET = env.str("GITHUB_OAUTH_CLIENT_SECRET", default="")
GITHUB_OAUTH_ORG = env.str("GITHUB_OAUTH_ORG", default="")
GITHUB_OAUTH_TEAM_GROUPS = env.str("GITHUB_OAUTH_TEAM_GROUPS", default="")
parse_group_map(GITHUB_OAUTH_TEAM_GROUPS, "GITHUB_OAUTH_TEAM_GROUPS")
GITHUB_OAUTH_URL = env.str("GITHUB_OAUTH_URL", default="")
if GITHUB_OAUTH_CLIENT_ID and not GITHUB_OAUTH_ORG:
    raise ImproperlyConfigured(
        "GITHUB_OAUTH_ORG is required with GITHUB_OAUTH_CLIENT_ID: only members sign in."
    )
SOCIAL_AUTH_URL_NAMESPACE = "social"
SOCIAL_AUTH_LOGIN_REDIRECT_URL = "/"
SOCIAL_AUTH_LOGIN_ERROR_URL = "/accounts/login/"
SOCIAL_AUTH_INACTIVE_USER_URL = "/accounts/login/"
SOCIAL_AUTH_USER_FIELDS = ["username", "email"]
# The account is GitHub's numeric id (social_uid); a username already taken (a local account)
# gets a suffix; nothing links accounts by e-mail; a deactivated account is refused with a
# message. The last step maps teams to groups.
SOCIAL_AUTH_PIPELINE = [
    "social_core.pipeline.social_auth.social_details",
    "social_core.pipeline.social_auth.social_uid",
    "social_core.pipeline.social_auth.auth_allowed",
    "social_core.pipeline.social_auth.social_user",
    "accounts.github.refuse_disabled",
    "social_core.pipeline.user.get_username",
    "social_core.pipeline.user.create_user",
    "social_core.pipeline.social_auth.associate_user",
    "social_core.pipeline.social_auth.load_extra_data",
    "social_core.pipeline.user.user_details",
    "accounts.github.apply_team_groups",
]
# --- end of sign in with GitHub ---

# --- API (api/, Django REST framework + drf-spectacular) ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pod Deployment Portal API",
    "DESCRIPTION": "Deploy pods through the portal's review, lock, idempotency and audit trail.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"RequestStatusEnum": "deployments.lifecycle.Status.choices"},
}
# A personal API token's longest life, in days (a service token may have none).
API_TOKEN_MAX_DAYS = env.int("API_TOKEN_MAX_DAYS", default=365)
# --- end of API ---

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "portal.logging.RequestContextFilter"}},
    "formatters": {
        "plain": {
            "()": "portal.logging.PlainFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(user)s] %(message)s",
        },
        # One JSON object per line, with request_id, user and any `extra` fields.
        "json": {"()": "portal.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env.str("LOG_FORMAT", default="plain" if DEBUG else "json"),
            "filters": ["request_context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # PyGithub and urllib3 are chatty below WARNING; their failures reach us as GitHubError.
    # Axes logs each failed sign-in and lockout as a WARNING, and its chatter below that.
    "loggers": {
        "github": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
