"""glmadmin settings: one module, every value from the environment.

Defaults give the embedded setup (SQLite and a private Redis on a unix socket
under the data directory); production sets DATABASE_URL and REDIS_URL.
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_float, env_int, env_list, env_secret, env_str, persistent_secret
from .lib import runas

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("GLMADMIN_DATA_DIR", str(BASE_DIR / "data"))).resolve()

DEBUG = env_bool("GLMADMIN_DEBUG", False)
SECRET_KEY = env_secret("GLMADMIN_SECRET_KEY") or persistent_secret(DATA_DIR / "secret_key")
ALLOWED_HOSTS = env_list("GLMADMIN_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("GLMADMIN_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_celery_beat",
    "axes",  # login throttling (see "auth" below)
    # Lowest layer first: monitoring -> inference -> alerts -> glmadmin (see the README).
    "glmadmin",
    "alerts",
    "inference",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login unless a view opts out explicitly.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a login refused for a lockout into the lockout page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "glmadmin.urls"
ASGI_APPLICATION = "glmadmin.asgi.application"

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
                "glmadmin.context_processors.live_state",
            ],
        },
    },
]

# --- database -------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'glmadmin.sqlite3'}")
try:
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("GLMADMIN_DB_CONN_MAX_AGE", 60, minimum=0))
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # web, worker and beat write to one file: wait for the lock, keep readers unblocked.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Browser tests run the real server in another process: it must see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: Celery broker, Channels layer, admission flag, locks -----------
REDIS_URL = env_str("REDIS_URL", f"unix://{DATA_DIR / 'redis.sock'}")
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL must start with redis://, rediss:// or unix://, got {REDIS_URL!r}")
# Keys of one installation share a prefix, so tests and a second installation
# can use the same Redis server without seeing each other.
REDIS_PREFIX = env_str("GLMADMIN_REDIS_PREFIX", "glmadmin")

# Pub/sub: a change is published once and each web process fans it out to its
# own pages, instead of one Redis list push and pop per open page. Nothing is
# lost by its fire-and-forget delivery: every message is the whole state and a
# connecting page is sent the current state first.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [{
                "address": REDIS_URL,
                # redis-py's async pool raises once max_connections are in use instead of waiting.
                "max_connections": env_int("GLMADMIN_REDIS_MAX_CONNECTIONS", 2000, minimum=10),
                # redis-py 8 reads with a 5 s timeout by default, which breaks channels_redis's
                # blocking reads (redis/redis-py#4091): allow well above them.
                "socket_timeout": 30,
            }],
            "prefix": f"{REDIS_PREFIX}:asgi",
        },
    }
}

# Kombu spells a unix socket redis+socket://.
CELERY_BROKER_URL = REDIS_URL.replace("unix://", "redis+socket://", 1)
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{REDIS_PREFIX}:celery:"}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged after it ran, so a worker killed mid-task does not lose it.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The lanes' pools grow for overlapping tasks and shrink when that is over (glmadmin/autoscale.py says why).
CELERY_WORKER_AUTOSCALER = "glmadmin.autoscale:Autoscaler"
# django-celery-beat's DatabaseScheduler (rows edited in the admin), asking for changes once every 5 s.
CELERY_BEAT_SCHEDULER = "glmadmin.beat:Scheduler"
CELERY_TASK_ALWAYS_EAGER = env_bool("GLMADMIN_CELERY_EAGER", False)
# Lanes, each consumed by its own worker process (Procfile, docker/compose.yaml): alerting work never
# waits behind engine control, cleanup or a slow notification send. Unrouted tasks use "celery"; each
# host's engine control and sampling use "engines.<host>" (set on their beat rows).
ALERTS_QUEUE, NOTIFY_QUEUE = "alerts", "notify"
CELERY_TASK_ROUTES = {
    "monitoring.tasks.check_disks": {"queue": ALERTS_QUEUE},
    "monitoring.tasks.watch_telemetry_flow": {"queue": ALERTS_QUEUE},
    "alerts.tasks.repeat_red_alerts": {"queue": ALERTS_QUEUE},
    "alerts.tasks.redeliver_stalled_notifications": {"queue": ALERTS_QUEUE},
    "alerts.tasks.release_silences": {"queue": ALERTS_QUEUE},
    "alerts.tasks.deliver_notification": {"queue": NOTIFY_QUEUE},
    # The names of the previous release, for messages queued before an upgrade.
    "monitoring.tasks.deliver_notification": {"queue": NOTIFY_QUEUE},
    "monitoring.tasks.repeat_red_alerts": {"queue": ALERTS_QUEUE},
    "monitoring.tasks.redeliver_stalled_notifications": {"queue": ALERTS_QUEUE},
    "monitoring.telemetry.rule_tasks.watch_telemetry_flow": {"queue": ALERTS_QUEUE},
}
# Every task has a deadline (most set a tighter one): a call hung on the outside world ends in an
# exception the task reports (soft), and the process running it is replaced if even that hangs (hard).
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 330

# --- auth ----------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one user name from one
# address, that pair is refused (even with the right password) for LOGIN_LOCKOUT_MINUTES; other users and
# other addresses still log in. The same holds for the admin's login. Locks are listed and cleared in the
# admin (Axes > Access attempts). Behind a reverse proxy, run uvicorn with --proxy-headers so the address
# is the client's, not the proxy's.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("GLMADMIN_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("GLMADMIN_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a right password (before the lock) forgets the earlier failures
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("GLMADMIN_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- email (SMTP) ---------------------------------------------------------
EMAIL_HOST = env_str("GLMADMIN_SMTP_HOST", "localhost")
EMAIL_PORT = env_int("GLMADMIN_SMTP_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("GLMADMIN_SMTP_USER")
EMAIL_HOST_PASSWORD = env_secret("GLMADMIN_SMTP_PASSWORD")
EMAIL_USE_TLS = env_bool("GLMADMIN_SMTP_STARTTLS", False)
EMAIL_USE_SSL = env_bool("GLMADMIN_SMTP_SSL", False)
EMAIL_TIMEOUT = env_int("GLMADMIN_SMTP_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("GLMADMIN_MAIL_FROM", "glmadmin@localhost")

# --- i18n, static ---------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("GLMADMIN_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves straight from the finders: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True

# --- monitoring -------------------------------------------------------------
DISK_SAMPLE_RETENTION_HOURS = env_int("GLMADMIN_DISK_SAMPLE_RETENTION_HOURS", 24, minimum=1)
# Seconds between the quick disk checks each host's alerts worker runs from a thread (monitoring/disk_watch.py):
# a check that reads what the last one read touches no database (under 1 ms of CPU), so a crossing reaches the
# pages within this interval plus the push (1,000 open pages: p99 1.5 s, docs/benchmarks.md). 0: off (the full
# check, by beat every 10 s, goes on either way).
DISK_CHECK_SECONDS = env_float("GLMADMIN_DISK_CHECK_SECONDS", 0.5, minimum=0)
# The dead man's switch (monitoring/deadman.py): no disk check completed for this many check intervals
# (the beat schedule's) shows "monitoring stalled" on every page and notifies from the web process. 0: off.
MONITORING_STALLED_AFTER_CHECKS = env_int("GLMADMIN_MONITORING_STALLED_AFTER_CHECKS", 3, minimum=0)
# ... and never sooner than this, however often the checks run.
MONITORING_STALLED_MIN_SECONDS = env_int("GLMADMIN_MONITORING_STALLED_MIN_SECONDS", 30, minimum=0)
# Cleanup: the directories in which (at or below) cleanup and log policies may act. Setting the variable
# replaces the list; adding a directory to it is how an operator confirms a root of their own.
CLEANUP_ALLOWED_ROOTS = env_list("GLMADMIN_CLEANUP_ALLOWED_ROOTS", [
    env_str("VLLM_CACHE_ROOT") or str(Path.home() / ".cache" / "vllm"),
    str(DATA_DIR / "cache"), str(DATA_DIR / "logs"), str(DATA_DIR / "engines"), "/tmp", "/var/tmp", "/var/log",
])
if any(not p.startswith("/") or Path(p).resolve() == Path("/") for p in CLEANUP_ALLOWED_ROOTS):
    raise ImproperlyConfigured("GLMADMIN_CLEANUP_ALLOWED_ROOTS takes absolute directories other than /, "
                               f"comma-separated; got {CLEANUP_ALLOWED_ROOTS}")

# --- engines -----------------------------------------------------------------
# The name of this machine among glmadmin hosts; its worker consumes the
# engines.<name> queue and supervises the engines whose host is this name.
GLMADMIN_HOST_NAME = env_str("GLMADMIN_HOST_NAME", "local")
# The engine runtime (vLLM) lives in its own virtualenv, apart from Django's.
ENGINE_PYTHON = env_str("GLMADMIN_ENGINE_PYTHON", str(BASE_DIR / ".venv-engine" / "bin" / "python"))
ENGINE_DIR = DATA_DIR / "engines"  # per engine: its log file
# Engines as an OS user of their own (e.g. "vllm"; empty: as glmadmin's user), which cannot read the data
# directory (kept at 0700). Needs glmadmin to run as root. Each engine's home (caches) is a directory of
# ENGINE_HOME_DIR owned by that user: outside the data directory, which the engine user cannot enter.
ENGINE_USER = env_str("GLMADMIN_ENGINE_USER", "")
ENGINE_HOME_DIR = Path(env_str("GLMADMIN_ENGINE_HOME_DIR", f"{DATA_DIR}-engine-homes")).resolve()
if ENGINE_USER and (_problem := runas.problem(ENGINE_USER, DATA_DIR, ENGINE_HOME_DIR, Path(ENGINE_PYTHON))):
    raise ImproperlyConfigured(_problem)
ENGINE_PROBE_INTERVAL = env_int("GLMADMIN_ENGINE_PROBE_INTERVAL", 10, minimum=1)
ENGINE_PROBE_TIMEOUT = env_int("GLMADMIN_ENGINE_PROBE_TIMEOUT", 10, minimum=1)
ENGINE_LIVENESS_THRESHOLD = env_int("GLMADMIN_ENGINE_LIVENESS_THRESHOLD", 3, minimum=1)
ENGINE_BACKOFF_SECONDS = env_int("GLMADMIN_ENGINE_BACKOFF_SECONDS", 5, minimum=0)
ENGINE_MAX_QUICK_FAILURES = env_int("GLMADMIN_ENGINE_MAX_QUICK_FAILURES", 3, minimum=1)
ENGINE_FAILURE_WINDOW_SECONDS = env_int("GLMADMIN_ENGINE_FAILURE_WINDOW_SECONDS", 600, minimum=1)
# A liveness restart (probes failing while nothing is generated) drains first, this long at most: requests
# still in flight on an engine that stopped answering probes get a chance to finish.
ENGINE_LIVENESS_DRAIN_SECONDS = env_int("GLMADMIN_ENGINE_LIVENESS_DRAIN_SECONDS", 10, minimum=0)
# Before a start, a process on the engine's GPUs holding more than this (GiB) keeps the engine waiting. The same
# default as the telemetry rules' foreign-process limit; a setting, not that rule, because the supervisor's
# start must not depend on the monitoring app (a higher layer) or on a database row being there.
try:
    ENGINE_FOREIGN_GIB = float(env_str("GLMADMIN_ENGINE_FOREIGN_GIB", "2"))
except ValueError:
    raise ImproperlyConfigured("GLMADMIN_ENGINE_FOREIGN_GIB must be a number of GiB, e.g. 2 or 0.5") from None
if ENGINE_FOREIGN_GIB < 0:
    raise ImproperlyConfigured(f"GLMADMIN_ENGINE_FOREIGN_GIB must not be negative, got {ENGINE_FOREIGN_GIB}")
# Soft restarts (vLLM's sleep mode: release and re-map the GPU memory in seconds, no model reload) exist only in
# vLLM's CUDA build, which refuses --enable-sleep-mode elsewhere: "auto" turns them on where an NVIDIA driver is.
ENGINE_SLEEP_MODE = env_str("GLMADMIN_ENGINE_SLEEP_MODE", "auto")
# The most each step of a soft restart (sleep, wake up, the probe) may take before the full restart is done
# instead; measured on 2 x H200 with a GLM-4.7-Flash-architecture engine: sleep 2.6 s, wake 1.0 s.
ENGINE_SOFT_RESTART_STEP_TIMEOUT = env_int("GLMADMIN_ENGINE_SOFT_RESTART_STEP_TIMEOUT", 60, minimum=1)
# The remedy ladder of the rules that restart (prefix cache reset -> soft -> full restart) reads the condition
# again this long after each step before it takes the next one.
REMEDY_SETTLE_SECONDS = env_int("GLMADMIN_REMEDY_SETTLE_SECONDS", 30, minimum=0)
# Engines start from a scrubbed environment (HOME, LANG, vLLM's, CUDA's, NCCL's, Hugging Face's variables): any
# code a model brings runs in them. More of the worker's variables an engine needs, by name: e.g. PYTHONPATH
# for an engine runtime installed with pip --target. Never glmadmin's secrets.
ENGINE_ENV_PASSTHROUGH = env_list("GLMADMIN_ENGINE_ENV_PASSTHROUGH", [])
_secret_like = [name for name in ENGINE_ENV_PASSTHROUGH if name.startswith("GLMADMIN_") or name in (
    "DATABASE_URL", "REDIS_URL") or any(word in name.upper() for word in ("SECRET", "PASSW", "TOKEN"))]
if _secret_like:
    raise ImproperlyConfigured(f"GLMADMIN_ENGINE_ENV_PASSTHROUGH must not pass glmadmin's secrets to engines: "
                               f"{', '.join(_secret_like)}")
# glmadmin's own web port (scripts/run serves on it): no engine of this host may take it.
WEB_PORT = env_int("GLMADMIN_PORT", 8000, minimum=1)

# --- notifications ------------------------------------------------------------
# The address people reach the dashboard at, for links in messages (e.g. https://ops.example.com).
PUBLIC_URL = env_str("GLMADMIN_PUBLIC_URL").rstrip("/")
if PUBLIC_URL and not PUBLIC_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"GLMADMIN_PUBLIC_URL must start with http:// or https://, got {PUBLIC_URL!r}")
# Each webhook request gives up after this long, so a dead channel holds a worker only briefly.
NOTIFY_TIMEOUT_SECONDS = env_int("GLMADMIN_NOTIFY_TIMEOUT", 10, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("GLMADMIN_LOG_LEVEL", "INFO")},
    # One line per probe request, or per periodic task sent, received and finished, would drown
    # the log (checks run every few seconds); failures still show. Axes: a line per login, and per
    # failure and lockout at WARNING.
    "loggers": {name: {"level": "WARNING"} for name in
                ("httpx", "celery.app.trace", "celery.worker.strategy", "celery.beat", "axes")},
}

# --- gateway (inference/gateway) -------------------------------------------------
# Guards: a request above these is refused with a 400 naming the field.
GATEWAY_MAX_BODY_BYTES = env_int("GLMADMIN_GATEWAY_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
GATEWAY_MAX_TOKENS = env_int("GLMADMIN_GATEWAY_MAX_TOKENS", 4096, minimum=1)
# n and best_of (answers generated per request): each is a whole generation but one concurrency slot.
GATEWAY_MAX_N = env_int("GLMADMIN_GATEWAY_MAX_N", 4, minimum=1)
# Prompt length is estimated in characters (no tokenizer on the hot path).
GATEWAY_MAX_PROMPT_CHARS = env_int("GLMADMIN_GATEWAY_MAX_PROMPT_CHARS", 100_000, minimum=1)
# Structured output (response_format, structured_outputs, guided_*), tools and chat template options:
# an engine compiles grammars and schemas at a cost that grows faster than their size.
GATEWAY_MAX_STRUCTURED_BYTES = env_int("GLMADMIN_GATEWAY_MAX_STRUCTURED_BYTES", 32 * 1024, minimum=256)
# Defaults for new API keys (each key can be changed in the admin) and the chat page's users. A key's
# defaults let one batch client fill an engine before it hears 429 (16 refused a 32-stream client on a
# GPU engine that had room for far more): 256 in flight is the batch vLLM runs at once by default
# (--max-num-seqs; more only waits in the engine's queue); 60,000 a minute is more than 256 streams of
# even short answers make, so it binds only floods of tiny requests (each costs the gateway 1-4 ms of
# CPU). Tokens per minute (0: none) is a key's share of an engine, which only the operator can size.
GATEWAY_KEY_RPM = env_int("GLMADMIN_GATEWAY_KEY_RPM", 60_000, minimum=1)
GATEWAY_KEY_CONCURRENCY = env_int("GLMADMIN_GATEWAY_KEY_CONCURRENCY", 256, minimum=1)
GATEWAY_KEY_TPM = env_int("GLMADMIN_GATEWAY_KEY_TPM", 0, minimum=0)
GATEWAY_USER_RPM = env_int("GLMADMIN_GATEWAY_USER_RPM", 60, minimum=1)
GATEWAY_USER_CONCURRENCY = env_int("GLMADMIN_GATEWAY_USER_CONCURRENCY", 4, minimum=1)
# Retry-After (seconds) while new requests are paused, and while a model is loading.
GATEWAY_PAUSED_RETRY_AFTER = env_int("GLMADMIN_GATEWAY_PAUSED_RETRY_AFTER", 60, minimum=1)
GATEWAY_LOADING_RETRY_AFTER = env_int("GLMADMIN_GATEWAY_LOADING_RETRY_AFTER", 15, minimum=1)
GATEWAY_CONNECT_TIMEOUT = env_int("GLMADMIN_GATEWAY_CONNECT_TIMEOUT", 5, minimum=1)
# Seconds an engine may take to send the first byte of an answer's body: queueing and prefill, and a
# non-streamed answer sends nothing until it is whole (4,096 tokens at a loaded engine's 10 a second: 410 s).
# 600 is also the OpenAI client's own default timeout: a longer wait would serve no one. Then, at most this
# many seconds of silence between two reads of an answer (a preempted request is recomputed, not minutes).
GATEWAY_UPSTREAM_FIRST_BYTE_TIMEOUT = env_int("GLMADMIN_GATEWAY_UPSTREAM_FIRST_BYTE_TIMEOUT", 600, minimum=1)
GATEWAY_UPSTREAM_IDLE_TIMEOUT = env_int("GLMADMIN_GATEWAY_UPSTREAM_IDLE_TIMEOUT", 120, minimum=1)
# A request counts as in flight (for limits and engine drains) this long past its last renewal; a
# running request's lease is renewed every quarter of it. The bound on what a killed web process
# leaves counted.
GATEWAY_REQUEST_LEASE = env_int("GLMADMIN_GATEWAY_REQUEST_LEASE", 120, minimum=2)
# The plain key of a new API key is shown once after it is saved: a message kept in the session
# (server side), not in the default cookie storage, which would send the secret to the browser.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- chat (inference/chat) -------------------------------------------------------
# Uploads (.txt/.pdf) put into a conversation: larger files are refused with a clear message.
CHAT_UPLOAD_MAX_BYTES = env_int("GLMADMIN_CHAT_UPLOAD_MAX_BYTES", 5 * 1024 * 1024, minimum=1)
# A PDF is read in a child process, killed past this many seconds; one with more pages is refused.
CHAT_UPLOAD_READ_SECONDS = env_int("GLMADMIN_CHAT_UPLOAD_READ_SECONDS", 10, minimum=1)
CHAT_UPLOAD_MAX_PAGES = env_int("GLMADMIN_CHAT_UPLOAD_MAX_PAGES", 100, minimum=1)
# Every other Django path's request body. The ASGI edge (glmadmin/asgi.py) answers 413 past these caps
# before Django reads (and spools to disk) a byte of it, whoever sends it, signed in or not.
WEB_MAX_BODY_BYTES = env_int("GLMADMIN_WEB_MAX_BODY_BYTES", 1024 * 1024, minimum=64 * 1024)
# The conversation sent with each turn is cut, oldest turns first, to this many characters so that
# it fits the engine's context (--max-model-len 4096 tokens by default, a few characters a token);
# an upload whose text alone is longer is refused.
CHAT_HISTORY_MAX_CHARS = env_int("GLMADMIN_CHAT_HISTORY_MAX_CHARS", 8000, minimum=100)
# The longest answer the page asks for; the page may ask for less.
CHAT_MAX_TOKENS = env_int("GLMADMIN_CHAT_MAX_TOKENS", 1024, minimum=1)
# The chat websocket is an edge like the API: a message longer than this (the page sends the whole
# conversation with each question) is refused unread, and each socket and each user (over all their
# sockets) may send this many messages a minute; a human sends a few.
CHAT_SOCKET_MAX_MESSAGE_CHARS = env_int("GLMADMIN_CHAT_SOCKET_MAX_MESSAGE_CHARS", 1_000_000, minimum=10_000)
CHAT_SOCKET_MESSAGES_PER_MINUTE = env_int("GLMADMIN_CHAT_SOCKET_MESSAGES_PER_MINUTE", 60, minimum=1)
CHAT_USER_MESSAGES_PER_MINUTE = env_int("GLMADMIN_CHAT_USER_MESSAGES_PER_MINUTE", 120, minimum=1)

# --- telemetry (monitoring/telemetry) --------------------------------------------
# Sampling interval and retention are edited in the admin (Telemetry settings), not here.
# One engine's /metrics may take this long per cycle before it counts as not answering.
TELEMETRY_SCRAPE_TIMEOUT = env_int("GLMADMIN_TELEMETRY_SCRAPE_TIMEOUT", 2, minimum=1)
# Rates and percentiles need the previous scrape; one older than this starts a new window instead.
TELEMETRY_WINDOW_MAX_SECONDS = env_int("GLMADMIN_TELEMETRY_WINDOW_MAX_SECONDS", 300, minimum=10)
# Prometheus /metrics: scrapers send "Authorization: Bearer <token>"; without a token set,
# only loopback clients are answered.
METRICS_TOKEN = env_secret("GLMADMIN_METRICS_TOKEN")
