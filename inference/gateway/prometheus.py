"""The gateway's counters for Prometheus: a collector that reads the totals from Redis per scrape."""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from . import routing, stats


class GatewayCollector:
    """glmadmin_gateway_* families; registered with glmadmin.exporter in InferenceConfig.ready()."""

    def collect(self):
        totals = stats.totals()
        requests = CounterMetricFamily("glmadmin_gateway_requests", "Requests to the OpenAI API, by outcome.",
                                       labels=["caller", "model", "engine", "status"])
        tokens = CounterMetricFamily("glmadmin_gateway_tokens", "Tokens through the gateway (completion tokens "
                                     "of streams without usage are estimated).", labels=["caller", "model", "kind"])
        histograms: dict[tuple[str, str], dict[str, float]] = {}
        sums: dict[tuple[str, str], float] = {}
        for field, value in totals.items():
            kind, *parts = field.split(stats.SEP)
            if kind == "req":
                requests.add_metric(parts, value)
            elif kind == "tok":
                tokens.add_metric(parts, value)
            elif kind in ("ttfb", "dur"):
                histograms.setdefault((kind, parts[0]), {})[parts[1]] = value
            elif kind in ("ttfb_sum", "dur_sum"):
                sums[(kind[:-4], parts[0])] = value
        yield requests
        yield tokens
        names = {"ttfb": ("glmadmin_gateway_first_byte_seconds", "Time from request to the engine's first byte."),
                 "dur": ("glmadmin_gateway_request_seconds", "Time from request to the end of the answer.")}
        for kind, (name, documentation) in names.items():
            family = HistogramMetricFamily(name, documentation, labels=["model"])
            for (which, model), counts in sorted(histograms.items()):
                if which != kind:
                    continue
                cumulative, buckets = 0.0, []
                for le in stats.BUCKETS:
                    cumulative += counts.get(f"{le:g}", 0)
                    buckets.append(("+Inf" if le == float("inf") else f"{le:g}", cumulative))
                family.add_metric([model], buckets, sum_value=sums.get((kind, model), 0.0))
            yield family
        in_flight = GaugeMetricFamily("glmadmin_gateway_in_flight", "Requests the gateway relays now, by engine.",
                                      labels=["engine"])
        for name in routing.table():
            in_flight.add_metric([name], routing.in_flight(name))
        yield in_flight
