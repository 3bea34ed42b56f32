"""The jitbot domain: config, state machine, engine, scheduler. Knows nothing of Slack."""
