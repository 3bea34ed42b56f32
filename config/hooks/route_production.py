"""Send requests for production targets to a stricter approval channel.

A target counts as production when its settings say `environment: production`, or, for targets
written before that convention, when its name starts with `prod_`:

    targets:
      - name: prod_admin
        label: Prod Admin
        settings: {environment: production, database: prod, role: admin}

Everything else goes to the flow's own `approval_channel`.
"""

# Channel IDs, not names: channels can be renamed, IDs never change.
PRODUCTION_APPROVALS = "C0PRODAPPROVALS"


def _is_production(target):
    return target.settings.get("environment") == "production" or target.name.startswith("prod_")


def get_approval_channel(evt):
    if _is_production(evt.target):
        return PRODUCTION_APPROVALS
    # None keeps the flow's approval_channel.
    return None
