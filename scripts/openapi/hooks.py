"""schemathesis hooks of scripts/check-openapi.sh (loaded through schemathesis.toml)."""

import itertools
import re

import schemathesis

BUDGET_HEADER = "x-treecache-budget-ms"
# A node that has to ask upstream rightly answers 504 when the request's time
# budget is a few milliseconds, and the not_a_server_error check would count
# that as a failure. So generated budgets under one second are raised to one
# second. Anything else (values that are not a whole number, which the node
# ignores) is sent as generated.
MIN_BUDGET_MS = 1000
# A key written with a ttl of a few milliseconds rightly reads 404 a moment
# later, and the stateful checks (a PUT, then a GET of the same key through
# the document's links) would count that as a lost write. So generated ttls
# under a minute are raised to a minute; other values (including the invalid
# ones of negative testing) are sent as generated.
MIN_TTL_SECONDS = 60


REQUEST_ID_HEADER = "x-treecache-request-id"
# A request id names one write: the root answers a write under an id it has
# seen (same method, key and body) with the first answer, without doing it
# again. The fuzzer reuses the few ids it makes for writes that are new (a
# DELETE, a PUT, then the same DELETE), which the stateful checks would count
# as a lost write. So every valid generated id gets a suffix of its own;
# invalid ones (negative testing) are sent as generated.
request_ids = itertools.count()


@schemathesis.hook
def map_headers(context, headers):
    if not headers:
        return headers
    for name, value in headers.items():
        text = str(value).strip()
        if name.lower() == BUDGET_HEADER:
            if re.fullmatch(r"[0-9]+", text) and int(text) < MIN_BUDGET_MS:
                headers[name] = str(MIN_BUDGET_MS)
        elif name.lower() == REQUEST_ID_HEADER:
            if re.fullmatch(r"[!-~]{1,180}", text):
                headers[name] = "%s-%d" % (text, next(request_ids))
    return headers


@schemathesis.hook
def map_body(context, body):
    if not isinstance(body, dict):
        return body
    ttl = body.get("ttl")
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 < ttl < MIN_TTL_SECONDS:
        body["ttl"] = MIN_TTL_SECONDS
    return body
