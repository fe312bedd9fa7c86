"""Cache cleanup and log rotation: policies (policy.py), scan and plan (plan.py),
the recorded run (run.py), log maintenance (logs.py), the dashboard card (panel.py)."""
