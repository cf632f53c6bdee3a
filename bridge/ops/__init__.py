"""Operating the bridge: events, metrics, the HTTP endpoint, progress, status, checks and log formats."""
