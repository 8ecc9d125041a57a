"""Prometheus metrics: what the code counts and times (``recording``), what is read from the ledger
and the broker when scraped (``fleet``), the web app's ``GET /metrics`` (``web``) and a worker node's
metrics port, which adds up every prefork child (``node``). ``specs`` names them all.
"""
