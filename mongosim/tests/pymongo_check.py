#!/usr/bin/env python3
"""Cross-driver check: pymongo against a running mongosim.

Usage: python3 pymongo_check.py MONGODB_URI
Needs: pymongo (pip install pymongo) and a mongosim listening at the URI.
Does CRUD, a watch, explicit and automatic resume, and a transaction; exits non-zero on any
mismatch, printing what differed.
"""

import sys
import time

from pymongo import MongoClient, ReturnDocument
from pymongo.errors import OperationFailure


def check(label, got, want):
    if got != want:
        print(f"MISMATCH {label}: got {got!r}, want {want!r}", file=sys.stderr)
        sys.exit(1)
    print(f"ok  {label}")


def next_events(stream, n, timeout=10.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        if time.monotonic() > deadline:
            print(f"MISMATCH timed out after {len(out)} of {n} events", file=sys.stderr)
            sys.exit(1)
        ev = stream.try_next()
        if ev is not None:
            out.append(ev)
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    client = MongoClient(sys.argv[1], serverSelectionTimeoutMS=10000)
    client.drop_database("pycheck")
    db = client["pycheck"]
    coll = db["items"]

    # CRUD
    coll.insert_one({"_id": 1, "name": "a", "qty": 1})
    coll.insert_many([{"_id": i, "name": n, "qty": i} for i, n in [(2, "b"), (3, "c")]])
    check("find sorted", [d["_id"] for d in coll.find({"qty": {"$gte": 2}}).sort("qty", -1)], [3, 2])
    r = coll.update_one({"_id": 1}, {"$set": {"name": "A"}, "$inc": {"qty": 4}})
    check("update counts", (r.matched_count, r.modified_count), (1, 1))
    check("updated doc", coll.find_one({"_id": 1}), {"_id": 1, "name": "A", "qty": 5})
    check("count", coll.count_documents({"qty": {"$gt": 1}}), 3)
    doc = coll.find_one_and_update({"_id": 2}, {"$push": {"tags": "x"}}, return_document=ReturnDocument.AFTER)
    check("findAndModify", doc, {"_id": 2, "name": "b", "qty": 2, "tags": ["x"]})
    check("delete", coll.delete_one({"_id": 3}).deleted_count, 1)
    try:
        coll.insert_one({"_id": 1})
        check("duplicate key raised", False, True)
    except OperationFailure as e:
        check("duplicate key code", e.code, 11000)

    # watch
    with coll.watch(max_await_time_ms=200) as stream:
        coll.insert_one({"_id": 10, "v": 1})
        coll.update_one({"_id": 10}, {"$set": {"v": 2}, "$unset": {"gone": ""}})
        coll.delete_one({"_id": 10})
        evs = next_events(stream, 3)
        check("event types", [e["operationType"] for e in evs], ["insert", "update", "delete"])
        check("insert fullDocument", evs[0]["fullDocument"], {"_id": 10, "v": 1})
        check("updatedFields", evs[1]["updateDescription"]["updatedFields"], {"v": 2})
        check("documentKey", evs[2]["documentKey"], {"_id": 10})
        check("tokens ordered", evs[0]["_id"]["_data"] < evs[1]["_id"]["_data"] < evs[2]["_id"]["_data"], True)
        first_token = evs[0]["_id"]
        second_time = evs[1]["clusterTime"]

    # explicit resume
    with coll.watch(resume_after=first_token, max_await_time_ms=200) as stream:
        check("resumeAfter", [e["operationType"] for e in next_events(stream, 2)], ["update", "delete"])
    with coll.watch(start_at_operation_time=second_time, max_await_time_ms=200) as stream:
        check("startAtOperationTime", [e["operationType"] for e in next_events(stream, 2)], ["update", "delete"])

    # automatic resume after the connection is closed under a getMore
    with coll.watch(max_await_time_ms=200) as stream:
        client.admin.command({
            "configureFailPoint": "failCommand", "mode": {"times": 1},
            "data": {"failCommands": ["getMore"], "closeConnection": True},
        })
        coll.insert_many([{"_id": 20 + i} for i in range(5)])
        ids = [e["documentKey"]["_id"] for e in next_events(stream, 5)]
        check("automatic resume loses and duplicates nothing", ids, [20, 21, 22, 23, 24])

    # transaction
    with coll.watch(max_await_time_ms=200) as stream:
        with client.start_session() as s:
            with s.start_transaction():
                coll.insert_one({"_id": 30}, session=s)
                coll.insert_one({"_id": 31}, session=s)
        evs = next_events(stream, 2)
        check("transaction shares clusterTime", evs[0]["clusterTime"] == evs[1]["clusterTime"], True)
        check("transaction events carry lsid", "lsid" in evs[0] and "txnNumber" in evs[0], True)

    client.drop_database("pycheck")
    print("pymongo check passed")


if __name__ == "__main__":
    main()
