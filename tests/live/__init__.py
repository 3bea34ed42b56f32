"""Live tests: the strategy contract against real accounts, run only with JITBOT_LIVE_TESTS=1 (docs/live-tests.md)."""
