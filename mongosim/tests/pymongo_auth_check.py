#!/usr/bin/env python3
"""Cross-driver authentication check: pymongo against a mongosim started with users.

Usage: python3 pymongo_auth_check.py HOST:PORT USER PASSWORD [CA_FILE]
Needs: pymongo (pip install pymongo) and a mongosim listening at HOST:PORT with the user
USER:PASSWORD in the admin database (and, when CA_FILE is given, TLS with a certificate that
CA signed). Checks SCRAM-SHA-256 (the default negotiation) for CRUD and a change stream,
SCRAM-SHA-1 on request, AuthenticationFailed (18) for a wrong password and Unauthorized (13)
without credentials; exits non-zero on any mismatch, printing what differed.
"""

import sys
from urllib.parse import quote_plus

from pymongo import MongoClient
from pymongo.errors import OperationFailure


def check(label, got, want):
    if got != want:
        print(f"MISMATCH {label}: got {got!r}, want {want!r}", file=sys.stderr)
        sys.exit(1)
    print(f"ok  {label}")


def main():
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    hostport, user, password = sys.argv[1:4]
    tls = f"&tls=true&tlsCAFile={quote_plus(sys.argv[4])}" if len(sys.argv) == 5 else ""

    def client(creds, extra=""):
        uri = f"mongodb://{creds}{hostport}/?directConnection=true{tls}{extra}"
        return MongoClient(uri, serverSelectionTimeoutMS=10000)

    creds = f"{quote_plus(user)}:{quote_plus(password)}@"

    # SCRAM-SHA-256 (negotiated), CRUD and a change stream.
    c = client(creds)
    db = c["pyauth"]
    with db["items"].watch(max_await_time_ms=500) as stream:
        db["items"].insert_one({"_id": 1, "v": "a"})
        event = None
        for _ in range(40):
            event = stream.try_next()
            if event is not None:
                break
        check("change stream event after SCRAM-SHA-256", event and event["documentKey"], {"_id": 1})
    check("find after SCRAM-SHA-256", db["items"].find_one({"_id": 1}), {"_id": 1, "v": "a"})
    status = c.admin.command("connectionStatus")
    check(
        "connectionStatus names the user",
        status["authInfo"]["authenticatedUsers"],
        [{"user": user, "db": "admin"}],
    )
    c.close()

    # SCRAM-SHA-1 on request.
    c = client(creds, "&authMechanism=SCRAM-SHA-1")
    check("count with SCRAM-SHA-1", c["pyauth"]["items"].count_documents({}), 1)
    c.close()

    # A wrong password.
    c = client(f"{quote_plus(user)}:wrong-{quote_plus(password)}@")
    try:
        c.admin.command("ping")
        check("wrong password refused", "accepted", "OperationFailure 18")
    except OperationFailure as e:
        check("wrong password code", e.code, 18)
        check("wrong password message", "Authentication failed." in str(e), True)
    c.close()

    # No credentials.
    c = client("")
    check("ping without credentials", c.admin.command("ping").get("ok"), 1.0)
    try:
        c["pyauth"]["items"].insert_one({"_id": 2})
        check("unauthenticated insert refused", "accepted", "OperationFailure 13")
    except OperationFailure as e:
        check("unauthenticated insert code", e.code, 13)
    c.close()


if __name__ == "__main__":
    main()
