"""The HTTP API (`/v1`): requests and decisions from scripts and CI, with tokens; an adapter over core."""
