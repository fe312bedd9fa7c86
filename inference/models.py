import hashlib
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.timesince import timesince

from glmadmin.lib import processes

from .options import KV_CACHE_DTYPES, QUANTIZATIONS, validate_env, validate_extra_args, validate_media_domains

# The fields a running process was started with: a change to one applies at the next restart (the supervisor
# records them in running_config at each start; until the restart, the process runs as recorded there).
LAUNCH_FIELDS = ("model", "served_model_name", "listen_address", "port", "gpu_ids", "tensor_parallel_size",
                 "max_model_len", "block_size", "max_num_seqs", "kv_cache_dtype", "enable_chunked_prefill",
                 "gpu_memory_utilization", "quantization", "enforce_eager", "shutdown_timeout", "extra_args", "env",
                 "soft_restart", "multimodal", "allowed_media_domains")
# What vLLM reserves of each GPU when --gpu-memory-utilization is not given.
VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
GPU_LIST = RegexValidator(r"^\s*(\d+\s*(,\s*\d+\s*)*)?$", "GPU ids as a comma-separated list of numbers, e.g. 0,1,2,3.")


# The supervisor's reason for a ready engine (inference/supervisor.py).
FIRST_PROBE_REASON = re.compile(r"ready; one-token probe \d+ ms")


class EngineState(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    STARTING = "starting", "Starting"
    READY = "ready", "Ready"
    DRAINING = "draining", "Draining"
    UNHEALTHY = "unhealthy", "Unhealthy"
    BACKOFF = "backoff", "Back-off"
    FAILED = "failed", "Failed"
    # Restarting in place through vLLM's sleep mode (drain, sleep, wake up, probe): not routed to meanwhile.
    SOFT_RESTART = "soft_restart", "Soft restart"


def default_host():
    return settings.GLMADMIN_HOST_NAME


class Engine(models.Model):
    """One vLLM server: what should run (edited in the admin) and what runs (written by the supervisor)."""

    # --- desired state --------------------------------------------------------
    name = models.SlugField(max_length=60, unique=True)
    host = models.CharField(max_length=100, default=default_host,
                            help_text="The glmadmin host (worker) that runs this engine.")
    listen_address = models.GenericIPAddressField(
        default="127.0.0.1", help_text="Keep 127.0.0.1: users reach engines only through the gateway.")
    port = models.PositiveIntegerField(validators=[MinValueValidator(1024), MaxValueValidator(65535)])
    model = models.CharField(max_length=500, help_text="Local model directory (or a model id already in the cache).")
    served_model_name = models.CharField(max_length=200, help_text="The model name clients ask for.")
    gpu_ids = models.CharField("GPU ids", max_length=100, blank=True, validators=[GPU_LIST],
                               help_text="Comma-separated, e.g. 0,1,2,3. Empty on a machine without GPUs.")
    tensor_parallel_size = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    max_model_len = models.PositiveIntegerField(default=4096, validators=[MinValueValidator(16)])
    block_size = models.PositiveSmallIntegerField(null=True, blank=True, choices=[(n, n) for n in (8, 16, 32, 64, 128)])
    max_num_seqs = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    kv_cache_dtype = models.CharField(max_length=20, default="auto", choices=[(d, d) for d in KV_CACHE_DTYPES])
    enable_chunked_prefill = models.BooleanField(null=True, blank=True, help_text="Empty: vLLM's default.")
    gpu_memory_utilization = models.FloatField(null=True, blank=True,
                                               validators=[MinValueValidator(0.05), MaxValueValidator(1.0)])
    quantization = models.CharField(max_length=30, blank=True, choices=[(q, q) for q in QUANTIZATIONS])
    enforce_eager = models.BooleanField(default=False)
    shutdown_timeout = models.PositiveIntegerField(
        default=30, help_text="Seconds in-flight requests get to finish when the engine is stopped.")
    startup_timeout = models.PositiveIntegerField(
        default=600, help_text="Seconds a start may take before it counts as failed (model loading is slow).")
    extra_args = models.JSONField(default=list, blank=True, validators=[validate_extra_args],
                                  help_text='More vLLM arguments as a JSON list, e.g. ["--seed", "1"]. Tuning flags '
                                            "are for staff; a flag that can run code, read files or reach the "
                                            "network needs a superuser.")
    env = models.JSONField("environment", default=dict, blank=True, validators=[validate_env],
                           help_text='Extra environment variables as a JSON object, e.g. {"VLLM_LOGGING_LEVEL": '
                                     '"DEBUG"}: VLLM_*, NCCL_*, CUDA_*, OMP_*, TORCH_*, HF_* and the like.')
    soft_restart = models.BooleanField(
        "soft restarts", default=False,
        help_text="Start with vLLM's sleep mode (CUDA only) so that a restart releases and re-maps the GPU memory in "
                  "seconds instead of reloading the model; falls back to a full restart when a step fails. Its "
                  "/sleep and /wake_up endpoints listen only where the engine does (loopback); the gateway never "
                  "forwards them.")
    multimodal = models.BooleanField(
        "serves a multimodal model", default=False,
        help_text="Let the gateway forward image, audio and video parts to this engine. The engine fetches media "
                  "URLs from its own host, so a URL is forwarded only when its host is one of the allowed media "
                  "domains below; data: URLs always are. Off: every media part is refused.")
    allowed_media_domains = models.JSONField(
        default=list, blank=True, validators=[validate_media_domains],
        help_text='Hosts media URLs may point at, exactly as written (no subdomains, no wildcards), as a JSON list, '
                  'e.g. ["images.example.com"]. Empty: no URL is fetched, only data: URLs. A loopback, private or '
                  "link-local host is fetched only if listed here. Passed to vLLM as --allowed-media-domains.")
    enabled = models.BooleanField(default=True, help_text="Disabled engines are stopped and stay stopped.")
    restart_generation = models.PositiveIntegerField(default=0, editable=False)
    daily_restart_at = models.TimeField(null=True, blank=True,
                                        help_text="Restart every day at this time (server time zone). Empty: never.")
    # The claim of a daily restart (inference/schedules.claim_daily_restart): a late duplicate of the day's
    # scheduled task, or one sent by a second beat, finds it taken and restarts nothing.
    last_scheduled_restart_at = models.DateTimeField(null=True, blank=True, editable=False)

    # --- observed state (the supervisor's) ------------------------------------
    state = models.CharField(max_length=12, choices=EngineState.choices, default=EngineState.STOPPED, editable=False)
    state_reason = models.CharField(max_length=300, blank=True, editable=False)
    state_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    pid = models.PositiveIntegerField(null=True, blank=True, editable=False)
    process_started_at = models.FloatField(null=True, blank=True, editable=False,
                                           help_text="The process's create time: tells our pid from a reused one.")
    running_generation = models.PositiveIntegerField(default=0, editable=False)
    running_config = models.JSONField(default=dict, editable=False,
                                      help_text="The launch fields the running process was started with.")
    ready_at = models.DateTimeField(null=True, blank=True, editable=False)
    stop_deadline = models.DateTimeField(null=True, blank=True, editable=False)
    quiet_since = models.DateTimeField(null=True, blank=True, editable=False,
                                       help_text="While draining: since when nothing has been in flight.")
    terminated_at = models.DateTimeField(null=True, blank=True, editable=False,
                                         help_text="When SIGTERM was sent, once in-flight requests had drained.")
    backoff_until = models.DateTimeField(null=True, blank=True, editable=False)
    restarts = models.PositiveIntegerField(default=0, editable=False)
    soft_restarts = models.PositiveIntegerField(default=0, editable=False)
    last_soft_restart_seconds = models.FloatField(null=True, blank=True, editable=False)
    recent_failures = models.JSONField(default=list, editable=False, help_text="Times of recent crashes.")
    probe_failures = models.PositiveSmallIntegerField(default=0, editable=False)
    shm_segments = models.JSONField(default=list, editable=False,
                                    help_text="Shared memory the engine mapped, removed after it stops.")
    last_probe_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_probe_ms = models.FloatField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["host", "port"], name="one_engine_per_host_port"),
        ]

    def __str__(self):
        return self.name

    @property
    def gpus(self) -> list[int]:
        return [int(g) for g in self.gpu_ids.split(",") if g.strip()]

    def reservation(self) -> float:
        """The fraction of each of its GPUs' memory vLLM reserves for the engine while it runs."""
        return self.gpu_memory_utilization or VLLM_DEFAULT_GPU_MEMORY_UTILIZATION

    def launch_config(self) -> dict:
        return {name: getattr(self, name) for name in LAUNCH_FIELDS}

    def running(self, name: str):
        """The value the running process was started with; the row's own when none runs (or it is not known)."""
        if self.pid and name in self.running_config:
            return self.running_config[name]
        return getattr(self, name)

    @property
    def base_url(self) -> str:
        # Where the process listens, not where the row says it will after a restart: a port edited in the
        # admin must not send the gateway, the probes and the drain to a port nothing listens on yet.
        address, port = self.running("listen_address"), self.running("port")
        address = f"[{address}]" if ":" in address else address
        return f"http://{address}:{port}"

    @property
    def shown_reason(self) -> str:
        """The reason worth showing beside the state. A ready engine's first-probe note ("ready; one-token probe
        9 ms", kept in its events) would contradict the latest probe time shown next to it."""
        if self.state == EngineState.READY and FIRST_PROBE_REASON.fullmatch(self.state_reason):
            return ""
        return self.state_reason

    @property
    def up_for(self) -> str:
        """How long a ready engine has been ready ("3 hours, 2 minutes"), "under a minute" at first (Django's
        timesince says "0 minutes"); "–" when it is not ready (the last run's time would contradict the state)."""
        if self.state != EngineState.READY or not self.ready_at:
            return "–"
        if timezone.now() - self.ready_at < timedelta(minutes=1):
            return "under a minute"
        return timesince(self.ready_at)

    def pending_restart(self) -> list[str]:
        """What was changed since the running process started, as "port 8001 → 8002" (a list or a mapping
        only by its name); empty when nothing waits for a restart."""
        if not self.pid:
            return []
        pending = []
        for name in LAUNCH_FIELDS:
            was, now = self.running_config.get(name, getattr(self, name)), getattr(self, name)
            if was != now:
                label = self._meta.get_field(name).verbose_name
                pending.append(label if isinstance(now, list | dict) else f"{label} {was} → {now}")
        return pending

    def clean(self):
        errors = {}
        gpus = self.gpus if GPU_LIST.regex.match(self.gpu_ids or "") else []
        if len(gpus) != len(set(gpus)):
            errors["gpu_ids"] = "A GPU is listed twice."
        if gpus and self.tensor_parallel_size != len(gpus):
            errors["tensor_parallel_size"] = (
                f"Tensor-parallel size {self.tensor_parallel_size} does not match the {len(gpus)} GPU(s) listed.")
        same_host = Engine.objects.filter(host=self.host).exclude(pk=self.pk)
        if self.port and same_host.filter(port=self.port).exists():
            errors["port"] = f"Port {self.port} is already used by another engine on host {self.host}."
        taken = {g for other in same_host.filter(enabled=True) for g in other.gpus}
        if self.enabled and gpus and taken & set(gpus):
            errors.setdefault("gpu_ids", f"GPU(s) {sorted(taken & set(gpus))} already belong to another engine "
                                         f"on host {self.host}.")
        if self.port and "port" not in errors and (problem := self._port_problem()):
            errors["port"] = problem
        if errors:
            raise ValidationError(errors)


    def _port_problem(self) -> str | None:
        """On this host: glmadmin's own web port, or a port something already listens on (a new one only:
        an engine's own process listens on its port)."""
        if self.host != settings.GLMADMIN_HOST_NAME:
            return None  # another machine's ports are not visible from here
        if self.port == settings.WEB_PORT:
            return f"Port {self.port} is glmadmin's own web port."
        wanted = (self.port, self.listen_address)
        unchanged = Engine.objects.filter(pk=self.pk).values_list("port", "listen_address").first() == wanted
        its_own = self.pid and (self.running_config.get("port"), self.running_config.get("listen_address")) == wanted
        if unchanged or its_own:
            return None
        if processes.port_in_use(self.listen_address, self.port):
            holder = processes.port_holder(self.port)
            by = f" by pid {holder.pid} ({holder.name()})" if holder is not None else ""
            return f"Port {self.port} is already in use on this host{by}."
        return None


class EngineEvent(models.Model):
    """Each state change of an engine, with why."""

    engine = models.ForeignKey(Engine, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    state = models.CharField(max_length=12, choices=EngineState.choices)
    previous = models.CharField(max_length=12, choices=EngineState.choices, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self):
        return f"{self.engine_id}: {self.previous} -> {self.state}"


def default_key_rpm():
    return settings.GATEWAY_KEY_RPM


def default_key_concurrency():
    return settings.GATEWAY_KEY_CONCURRENCY


def default_key_tpm():
    return settings.GATEWAY_KEY_TPM or None  # 0: no token limit


class ApiKey(models.Model):
    """A key for the OpenAI-compatible API. Only its SHA-256 is stored: the key is shown once, when made."""

    PREFIX = "sk-glm-"

    name = models.CharField(max_length=100, help_text="Who or what uses this key, e.g. “search team batch jobs”.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="api_keys")
    prefix = models.CharField(max_length=16, editable=False, help_text="The key's first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    requests_per_minute = models.PositiveIntegerField(default=default_key_rpm, validators=[MinValueValidator(1)])
    max_concurrent = models.PositiveIntegerField("concurrent requests", default=default_key_concurrency,
                                                 validators=[MinValueValidator(1)])
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, default=default_key_tpm, validators=[MinValueValidator(1)],
        help_text="Prompt and completion tokens a minute, as the engine counts them; at the limit the key is "
                  "refused (429 with Retry-After) until enough of the last minute's tokens age out. "
                  "Blank: no token limit.")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name", "pk"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(plain: str) -> str:
        # Keys are 256 random bits: a fast hash is enough (no dictionary to guess from), and it is
        # computed on every request.
        return hashlib.sha256(plain.encode()).hexdigest()

    def new_secret(self) -> str:
        """Give the (unsaved) key a fresh secret; returns the plain key, which is not kept anywhere."""
        plain = self.PREFIX + secrets.token_urlsafe(32)
        self.prefix, self.key_hash = plain[:len(self.PREFIX) + 4], self.hash(plain)
        return plain

    @property
    def active(self) -> bool:
        return self.revoked_at is None
