"""The command line's larger commands, kept out of bot.py: API tokens, and requests through the HTTP API."""
