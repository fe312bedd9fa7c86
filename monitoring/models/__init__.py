"""monitoring's models, one module per domain; Django finds them through this package."""

from .cleanup import CleanupPolicy, CleanupRun, LogPolicy
from .disks import DiskSample, WatchedFilesystem
from .telemetry import EngineSample, GpuSample, HostSample, Resolution, TelemetrySettings
from .telemetry_rules import RuleRestart, TelemetryRules

__all__ = [
    "CleanupPolicy", "CleanupRun", "DiskSample", "EngineSample", "GpuSample", "HostSample", "LogPolicy",
    "Resolution", "RuleRestart", "TelemetryRules", "TelemetrySettings", "WatchedFilesystem",
]
