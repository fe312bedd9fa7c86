"""The Prometheus /metrics registry: apps register collectors here (in AppConfig.ready).

A collector is any object with a prometheus_client-style ``collect()`` that yields metric
families; the /metrics view builds a fresh CollectorRegistry of them per scrape, so nothing
here holds samples between scrapes.
"""
_collectors = []


def register(collector):
    if collector not in _collectors:
        _collectors.append(collector)


def collectors():
    return list(_collectors)
