"""The sandbox: the whole product on one machine, no Slack workspace needed.

`sandbox/slack/` is the local Slack (Web API + Socket Mode) the bot talks to exactly as it talks to
Slack; the test suite uses the same one.
"""
