"""A GPU's health state (ok / degraded / failing) from its NVML signals, each finding with what to do.

The actions follow NVIDIA's Xid catalogue and its ECC / row-remapping guidance:
- application faults (Xid 13, 31, 43, and 94, a contained ECC error that hit only the process using that
  memory): restart the application, here the engine; the GPU itself is fine;
- the GPU fell off the bus (79), uncorrectable memory errors (48, 95, volatile uncorrected ECC), a row remap
  waiting to be applied (63 or pending in NVML), a hung GPU or its firmware (61, 62, 119, 120): reset the GPU
  (nvidia-smi -r, with nothing running on it) or reboot the host;
- a remap that failed (64, or NVML's failure flag) or too many retired pages: the memory has run out of
  spare rows; replace the GPU (open a ticket with the vendor);
- hardware clock slowdowns, a PCIe link below its width or generation, PCIe replays and NVLink errors:
  the board, its cooling, power, slot or cables (degraded: the GPU works, slower or at risk).
glmadmin itself never resets a GPU: it can only stop routing to it (drain and stop the engine) or restart
the engine, and says what the operator must do.

Model-free, like gpu_health.
"""

from dataclasses import dataclass

from .gpu_health import GpuHealth, XidEvent
from .readings import Finding

OK, DEGRADED, FAILING = "ok", "degraded", "failing"
_RANK = {OK: 0, DEGRADED: 1, FAILING: 2}

# What the operator (or glmadmin) should do, as the catalogue says it.
RESTART_ENGINE = "restart the engine (an application fault; the GPU itself is fine)"
RESET_GPU = "reset the GPU (nvidia-smi -r with no process on it) or reboot the host"
REPLACE = "replace the GPU: open a ticket with the vendor (its memory has no spare rows left)"
CHECK_COOLING = "check the GPU's cooling and power delivery (fans, airflow, PSU, power cables)"
CHECK_LINK = "reseat the GPU, check its slot, riser and cables; the link should train at its maximum"
WATCH_ECC = "watch it: if it repeats, reset the GPU (remaps the rows), and replace it if it still does"
CHECK_NVLINK = "check the NVLink bridge or board; if errors keep rising, reset the GPUs or reboot the host"
RESTART_ENGINE_KIND, RESET_KIND, REPLACE_KIND, CHECK_KIND = "restart-engine", "reset-gpu", "replace", "check"


@dataclass(frozen=True)
class XidClass:
    state: str
    meaning: str
    action: str
    kind: str


APP = XidClass(DEGRADED, "application fault", RESTART_ENGINE, RESTART_ENGINE_KIND)
XIDS: dict[int, XidClass] = {
    13: APP, 31: APP, 43: APP,
    94: XidClass(DEGRADED, "contained ECC error (only the process using that memory was hit)", RESTART_ENGINE,
                 RESTART_ENGINE_KIND),
    45: XidClass(DEGRADED, "preemptive cleanup after an earlier fault", RESTART_ENGINE, RESTART_ENGINE_KIND),
    48: XidClass(FAILING, "double-bit (uncorrectable) ECC error", RESET_GPU, RESET_KIND),
    61: XidClass(FAILING, "internal micro-controller breakpoint", RESET_GPU, RESET_KIND),
    62: XidClass(FAILING, "internal micro-controller halt", RESET_GPU, RESET_KIND),
    63: XidClass(FAILING, "row remapping / page retirement recorded: applied at the next reset", RESET_GPU,
                 RESET_KIND),
    64: XidClass(FAILING, "row remapping / page retirement failed", REPLACE, REPLACE_KIND),
    74: XidClass(FAILING, "NVLink error", CHECK_NVLINK, RESET_KIND),
    79: XidClass(FAILING, "GPU has fallen off the bus", RESET_GPU, RESET_KIND),
    92: XidClass(DEGRADED, "high single-bit ECC error rate", WATCH_ECC, CHECK_KIND),
    95: XidClass(FAILING, "uncontained ECC error (every process on the GPU was hit)", RESET_GPU, RESET_KIND),
    119: XidClass(FAILING, "GSP (GPU firmware) RPC timeout", RESET_GPU, RESET_KIND),
    120: XidClass(FAILING, "GSP (GPU firmware) error", RESET_GPU, RESET_KIND),
}


def xid_class(code: int) -> XidClass:
    return XIDS.get(code) or XidClass(DEGRADED, "not in glmadmin's list",
                                      f"look Xid {code} up in NVIDIA's Xid catalogue", CHECK_KIND)


@dataclass(frozen=True)
class Limits:
    """The editable parts of the judgement (monitoring.models.TelemetryRules)."""

    retired_pages: int = 60  # NVIDIA: a board with this many retired pages qualifies for replacement
    pcie_replays_per_minute: float = 8.0  # DCGM's default PCIe replay rate watch
    nvlink_errors_per_minute: float = 0.0
    busy_percent: float = 50.0  # PCIe generation is judged only this busy: idle GPUs lower it to save power


@dataclass(frozen=True)
class Rates:
    """Counter growth per minute since the previous cycle; None where unknown (first cycle, reset)."""

    pcie_replays: float | None = None
    nvlink_errors: float | None = None


def worst(states) -> str:
    return max(states, key=_RANK.__getitem__, default=OK)


def assess(health: GpuHealth, xids: list[XidEvent], rates: Rates, limits: Limits,
           utilization: float | None = None) -> tuple[str, list[Finding]]:
    """(state, findings) of one GPU; `xids` are its recent Xid events, newest last."""
    findings: list[Finding] = []
    add = findings.append
    if not health.answering:
        add(Finding("nvml", FAILING, f"NVML does not answer for this GPU ({health.error})", RESET_GPU, RESET_KIND))
    for code in dict.fromkeys(x.code for x in xids):  # each Xid once, in the order they came
        cls = xid_class(code)
        times = sum(1 for x in xids if x.code == code)
        add(Finding("xid", cls.state, f"Xid {code}: {cls.meaning}" + (f" ({times} times)" if times > 1 else ""),
                    cls.action, cls.kind))
    if health.ecc_uncorrected:
        add(Finding("ecc", FAILING, f"{health.ecc_uncorrected} uncorrectable ECC error(s) since the last reset",
                    RESET_GPU, RESET_KIND))
    if health.remap_failed:
        add(Finding("remap", FAILING, "row remapping failed", REPLACE, REPLACE_KIND))
    elif health.remap_pending:
        add(Finding("remap", FAILING, "a row remap is pending (applied at the next GPU reset)", RESET_GPU,
                    RESET_KIND))
    if health.retired_pages is not None and health.retired_pages >= limits.retired_pages:
        add(Finding("retired", FAILING, f"{health.retired_pages} retired memory pages (limit "
                    f"{limits.retired_pages})", REPLACE, REPLACE_KIND))
    elif health.retired_pending:
        add(Finding("retired", FAILING, "a page retirement is pending (applied at the next driver load)",
                    RESET_GPU, RESET_KIND))
    if health.clock_reasons:
        add(Finding("clocks", DEGRADED, "clocks lowered: " + ", ".join(health.clock_reasons), CHECK_COOLING,
                    CHECK_KIND))
    if None not in (health.pcie_width, health.pcie_width_max) and health.pcie_width < health.pcie_width_max:
        add(Finding("pcie-width", DEGRADED, f"PCIe link x{health.pcie_width} of x{health.pcie_width_max}",
                    CHECK_LINK, CHECK_KIND))
    if (None not in (health.pcie_gen, health.pcie_gen_max) and health.pcie_gen < health.pcie_gen_max
            and utilization is not None and utilization >= limits.busy_percent):
        add(Finding("pcie-gen", DEGRADED, f"PCIe link at gen {health.pcie_gen} of {health.pcie_gen_max} while "
                    f"{utilization:.0f} % busy", CHECK_LINK, CHECK_KIND))
    if rates.pcie_replays is not None and rates.pcie_replays > limits.pcie_replays_per_minute:
        add(Finding("pcie-replay", DEGRADED, f"PCIe replays rising: {rates.pcie_replays:.1f} per minute",
                    CHECK_LINK, CHECK_KIND))
    if rates.nvlink_errors is not None and rates.nvlink_errors > limits.nvlink_errors_per_minute:
        add(Finding("nvlink", DEGRADED, f"NVLink errors rising: {rates.nvlink_errors:.1f} per minute",
                    CHECK_NVLINK, CHECK_KIND))
    return worst(f.state for f in findings), findings


def signals(health: GpuHealth) -> dict[str, str]:
    """Every signal as the displays show it: a value, or "not supported"."""
    def show(value, fmt=str):
        return "not supported" if value is None else fmt(value)

    if not health.answering:
        return {"NVML": f"not answering: {health.error}"}
    nvlink = ("not supported" if health.nvlink_links is None else
              f"{health.nvlink_links} link(s)" + (
                  ", errors " + " ".join(f"{k} {v}" for k, v in sorted(health.nvlink_errors.items()))
                  if health.nvlink_errors else ", error counters not supported" if health.nvlink_errors is None
                  else ""))
    return {
        "ECC uncorrected": show(health.ecc_uncorrected),
        "ECC corrected": show(health.ecc_corrected),
        "remapped rows": show(health.remapped_rows) + (
            "" if health.remapped_rows is None else
            (", pending" if health.remap_pending else "") + (", FAILED" if health.remap_failed else "")),
        "retired pages": show(health.retired_pages) + (", pending" if health.retired_pending else ""),
        "clock events": show(health.clock_events, lambda v: ", ".join(health.clock_reasons) or "none"),
        "PCIe": (f"x{show(health.pcie_width)}/x{show(health.pcie_width_max)} gen {show(health.pcie_gen)}/"
                 f"{show(health.pcie_gen_max)}"),
        "PCIe replays": show(health.pcie_replays),
        "NVLink": nvlink,
    }
