"""Reports for auditors, rendered from core values: the access review as CSV or one HTML page."""
