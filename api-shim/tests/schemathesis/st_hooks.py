"""Schemathesis checks of our own, loaded by api-shim/tests/contract.rs
(SCHEMATHESIS_HOOKS=st_hooks)."""

import json
import schemathesis


@schemathesis.check
def problem_status_matches_http_status(ctx, response, case):
    """Every application/problem+json body's `status` is the HTTP status."""
    if not response.headers.get("content-type", [""])[0].startswith("application/problem+json"):
        return None
    if not response.content:  # HEAD: headers only
        return None
    body = json.loads(response.content)
    if body.get("status") != response.status_code:
        raise AssertionError(
            f"problem body says status {body.get('status')}, the response is {response.status_code}"
        )
    return None
