"""Fast-track requests from whoever is on call in PagerDuty.

Use in config/flows.yaml:

    integrations:
      pagerduty:
        type: pagerduty
        api_token: ${env:PAGERDUTY_API_TOKEN}
        schedule_ids: [P1PRIMARY]      # optional: only this rotation counts as "on call"

    flows:
      - name: prod_incident
        ...
        hooks: hooks/oncall_fasttrack.py

The request is still posted to the approval channel, marked as approved by this hook, so every
grant stays visible. If PagerDuty cannot be reached the hook fails, nothing is fast-tracked, and the
request waits for a human as usual.
"""


async def on_request(evt):
    # `pagerduty` is the name of the entry under `integrations:`; rename both together.
    if await evt.integrations.pagerduty.is_on_call(evt.user):
        return evt.approve("on call in PagerDuty")
    # Returning nothing leaves the request pending for the approvers.
    return None
