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


def amqp(host, port, user, password):
    """What pika says of each: a login refused, a queue that is not there, a declare that contradicts the
    queue, a mandatory message no queue takes, a publish to an exchange that is not there — and a queue
    declared, a message published and got back."""
    import pika
    from pika.exceptions import ChannelClosedByBroker, ProbableAuthenticationError, UnroutableError

    def connect(pw):
        return pika.BlockingConnection(pika.ConnectionParameters(
            host=host, port=int(port), credentials=pika.PlainCredentials(user, pw), connection_attempts=1,
            socket_timeout=10, blocked_connection_timeout=10))

    out = {}
    try:
        connect("wrong").close()
        out["login"] = "ok"
    except ProbableAuthenticationError as e:
        out["login"] = str(e)
    c = connect(password)

    def on_channel(name, action):
        ch = c.channel()
        try:
            action(ch)
            out[name] = "ok"
            ch.close()
        except ChannelClosedByBroker as e:
            out[name] = [e.reply_code, e.reply_text]
        except UnroutableError:
            out[name] = "unroutable"
            ch.close()

    def good(ch):
        ch.queue_declare("orders", durable=True)
        ch.basic_publish("", "orders", b"one")
        method, _, body = ch.basic_get("orders", auto_ack=True)
        assert body == b"one", body

    def returned(ch):
        ch.confirm_delivery()
        ch.basic_publish("", "nowhere", b"x", mandatory=True)

    def missing_exchange(ch):
        ch.confirm_delivery()
        ch.basic_publish("no-such-exchange", "k", b"x")

    on_channel("good", good)
    on_channel("missing_queue", lambda ch: ch.queue_declare("nowhere", passive=True))
    on_channel("precondition", lambda ch: ch.queue_declare("orders", durable=False))
    on_channel("returned", returned)
    on_channel("missing_exchange", missing_exchange)
    c.close()
    return out


def kafka(bootstrap):
    """What librdkafka (confluent-kafka) reports: a topic created twice, a produce to a topic that does not
    exist (the broker does not create topics here), a fetch from an offset past the end, and two consumers
    of one group (a rebalance) that read what was produced."""
    import time
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    out = {}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("orders", 1, 1)])["orders"].result(10)
    try:
        admin.create_topics([NewTopic("orders", 1, 1)])["orders"].result(10)
        out["again"] = "ok"
    except KafkaException as e:
        out["again"] = e.args[0].name()
    delivered = []
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 3000})
    p.produce("orders", b"one", on_delivery=lambda err, msg: delivered.append(err.name() if err else "ok"))
    p.flush(10)
    p.produce("missing-topic", b"x", on_delivery=lambda err, msg: delivered.append(err.name() if err else "ok"))
    p.flush(10)
    out["produce"] = delivered
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "auto.offset.reset": "error",
                  "enable.auto.commit": False})
    c.assign([TopicPartition("orders", 0, 100)])
    m = c.poll(10)
    out["out_of_range"] = m.error().name() if m is not None and m.error() else None
    c.close()
    conf = {"bootstrap.servers": bootstrap, "group.id": "group", "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 300}
    first, got = Consumer(conf), []
    first.subscribe(["orders"])
    deadline = time.time() + 40
    while not got and time.time() < deadline:
        m = first.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    second = Consumer(conf)
    second.subscribe(["orders"])
    for _ in range(12):
        first.poll(0.25)
        second.poll(0.25)
    first.close()
    second.close()
    out["consumed"] = got
    return out


def crc32c(data):
    """CRC-32C (Castagnoli), as Kafka's record batches carry it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def varint(n):
    n = (n << 1) ^ (n >> 63)  # zigzag
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def record_batch(value):
    """One record in a v2 record batch, as a producer writes it."""
    import struct
    body = b"\0" + varint(0) + varint(0) + varint(-1) + varint(len(value)) + value + varint(0)
    record = varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, 0, 0, 0, -1, -1, -1, 1) + record
    header = struct.pack(">iB", 0, 2)  # partition leader epoch, magic
    batch = header + struct.pack(">I", crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(batch)) + batch


def kafka_replicated(bootstrap):
    """Creates the topic `replicated` (one partition on both brokers) and waits until its leader and both
    replicas are known. Run before the capture: right after its creation a broker may not know the topic
    yet and answer a Metadata request UNKNOWN_TOPIC_OR_PARTITION, and librdkafka asks again by itself —
    real errors on the wire, but not the ones the test makes."""
    import time
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("replicated", 1, 2)])["replicated"].result(10)
    for _ in range(100):
        md = admin.list_topics(topic="replicated", timeout=5)
        part = md.topics["replicated"].partitions.get(0)
        if md.topics["replicated"].error is None and part is not None and part.leader >= 0 and len(part.isrs) == 2:
            return {"leader": part.leader}
        time.sleep(0.1)
    raise RuntimeError("the topic replicated never had a leader and two in-sync replicas")


def kafka_follower(bootstrap):
    """A produce sent by hand to the broker that follows the partition, not the one that leads it: the
    error code the broker answers (a client library always finds the leader first). `replicated` must
    exist (`kafka_replicated`)."""
    import socket
    import struct
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic="replicated", timeout=5)
    part = md.topics["replicated"].partitions[0]
    follower = next(b for b in md.brokers.values() if b.id != part.leader)
    records = record_batch(b"misdirected")
    topic = b"replicated"
    body = struct.pack(">hhi", -1, -1, 30000) + struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic
    body += struct.pack(">i", 1) + struct.pack(">ii", 0, len(records)) + records
    header = struct.pack(">hhih", 0, 3, 4242, 3) + b"raw"
    request = header + body
    with socket.create_connection((follower.host, follower.port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
        resp = sock.recv(size, socket.MSG_WAITALL)
    correlation, = struct.unpack_from(">i", resp, 0)
    n = struct.unpack_from(">h", resp, 8)[0]
    at = 10 + n + 4  # topic name, partition count
    index, code = struct.unpack_from(">ih", resp, at)
    return {"correlation": correlation, "partition": index, "code": code, "leader": part.leader,
            "follower": follower.id, "port": follower.port}


if __name__ == "__main__":
    print(json.dumps(globals()[sys.argv[1]](*sys.argv[2:])))
