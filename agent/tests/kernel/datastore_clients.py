"""Clients for the datastore kernel test, run inside the client namespace: each makes the calls it is
told to and prints, as JSON, what its library reported — the ground truth the entries are checked against."""

import json
import sys


def redis_pipeline(host, port):
    """100 commands in one pipeline, 3 of them failing; what redis-py says of each."""
    import redis
    r = redis.Redis(host=host, port=int(port), socket_timeout=10)
    r.set("s", "x")
    p = r.pipeline(transaction=False)
    for i in range(100):
        if i in (10, 50, 90):
            p.lpush("s", "y")  # WRONGTYPE: s holds a string
        else:
            p.get(f"k{i}")
    out = [type(x).__name__ if isinstance(x, Exception) else "ok" for x in p.execute(raise_on_error=False)]
    r.close()
    return out


def pg(host, port, user, password, *statements):
    """Each statement on its own connection, prepared and run with pg8000 (the extended protocol:
    Parse/Bind/Execute/Sync); the SQLSTATE it failed with."""
    import pg8000.native
    out = []
    for sql in statements:
        try:
            c = pg8000.native.Connection(user, host=host, port=int(port), password=password, database="postgres", timeout=10)
        except pg8000.exceptions.DatabaseError as e:
            out.append(e.args[0].get("C"))
            continue
        try:
            c.prepare(sql).run()
            out.append("ok")
        except pg8000.exceptions.DatabaseError as e:
            out.append(e.args[0].get("C"))
        finally:
            c.close()
    return out


def mysql_many(host, port, user, password, n):
    """`n` connections held open at once; the error numbers of those refused."""
    import pymysql
    held, out = [], []
    for _ in range(int(n)):
        try:
            held.append(pymysql.connect(host=host, port=int(port), user=user, password=password, connect_timeout=10))
            out.append("ok")
        except pymysql.err.OperationalError as e:
            out.append(e.args[0])
    for c in held:
        c.close()
    return out


if __name__ == "__main__":
    print(json.dumps(globals()[sys.argv[1]](*sys.argv[2:])))
