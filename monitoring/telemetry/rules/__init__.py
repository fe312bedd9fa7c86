"""Telemetry rules: incidents and actions from each sampling cycle.

evaluate  the per-cycle judge: raise, clear, act (called by the sampler)
checks    one function per rule, turning a cycle into observations
state     what the judge remembers between cycles (in Redis)
actions   what a rule may do: restart an engine, with a cool-down
watchdog  "no data": a host whose cycles stopped arriving
admin     the one admin page of every rule's thresholds (monitoring.models.TelemetryRules)
"""
