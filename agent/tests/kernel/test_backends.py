"""The services pods talk to, on real kernels (SPEC §3.5): Debian's redis-server, PostgreSQL and MariaDB,
driven by their own command-line clients and by client libraries (redis-py, pg8000, PyMySQL), failing the
way they fail in clusters. Ground truth: what each client printed or raised — the server's own error — and,
for Redis, PostgreSQL and MySQL, tshark's dissectors reading the same capture."""

import glob
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netlab import SERVER4, Lab, analyze

CLIENTS = str(Path(__file__).resolve().parent / "backend_clients.py")


def client(lab, *args, timeout=60):
    r = subprocess.run(["ip", "netns", "exec", lab.c, *args], capture_output=True, text=True, timeout=timeout)
    return r


def library(lab, *args):
    r = client(lab, sys.executable, CLIENTS, *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def errors_of(entries, protocol):
    return [e for e in entries if e["protocol"] == protocol and e.get("error")]


def test_redis_errors_are_the_servers_own_once_each(tmp_path):
    pcap = tmp_path / "redis.pcap"
    with Lab() as lab:
        common = ["--bind", SERVER4, "--protected-mode", "no", "--save", "", "--appendonly", "no"]
        lab.serve("redis-server", "--port", "6379", "--maxmemory", "2mb", "--maxmemory-policy", "noeviction",
              "--dir", str(tmp_path), *common)
        lab.serve("redis-server", "--port", "6380", "--requirepass", "s3cret", "--dir", str(tmp_path), *common)
        lab.serve("redis-server", "--port", "6381", "--replicaof", SERVER4, "6379", "--dir", str(tmp_path), *common)
        for port in (6379, 6380, 6381):
            lab.wait_listening(port)
        cli = ["redis-cli", "-h", SERVER4]
        with lab.capture(pcap, bpf="tcp portrange 6379-6381"):
            seen = {}
            for name, port, args in [
                ("set", 6379, ["SET", "s", "x"]),
                ("wrongtype", 6379, ["LPUSH", "s", "y"]),
                ("unknown", 6379, ["FLUBBER", "a"]),
                ("noauth", 6380, ["GET", "k"]),
                ("readonly", 6381, ["SET", "r", "1"]),
            ]:
                seen[name] = client(lab, *cli, "-p", str(port), *args).stdout.strip()
            # Fill the memory until the server refuses: OOM.
            big = "x" * 100_000
            script = "".join(f"SET big{i} {big}\n" for i in range(40))
            r = subprocess.run(["ip", "netns", "exec", lab.c, *cli, "-p", "6379"], input=script, capture_output=True,
                               text=True, timeout=60)
            seen["oom"] = [line for line in r.stdout.splitlines() if line.startswith("OOM")]
            pipeline = library(lab, "redis_pipeline", SERVER4, "6379")
            time.sleep(0.5)
    # What the clients were told.
    assert seen["wrongtype"].startswith("WRONGTYPE"), seen
    assert seen["unknown"].startswith("ERR unknown command"), seen
    assert seen["noauth"].startswith("NOAUTH"), seen
    assert seen["readonly"].startswith("READONLY"), seen
    assert seen["oom"], seen
    assert pipeline.count("ResponseError") == 3 and pipeline.count("ok") == 97, pipeline

    entries = analyze(pcap)
    errors = errors_of(entries, "redis")
    by_code = {}
    for e in errors:
        assert e["error"]["type"] == "redis", e
        by_code.setdefault(e["redis"]["code"], []).append(e)
    # Each error once, with the server's text: WRONGTYPE from redis-cli and 3 in the pipeline.
    assert len(by_code["WRONGTYPE"]) == 4, by_code.get("WRONGTYPE")
    assert {e["redis"]["command"] for e in by_code["WRONGTYPE"]} == {"LPUSH"}
    assert by_code["WRONGTYPE"][0]["error"]["msg"] == seen["wrongtype"]
    assert [e["redis"]["command"] for e in by_code["ERR"]] == ["FLUBBER"], by_code["ERR"]
    assert by_code["ERR"][0]["error"]["msg"].strip() == seen["unknown"]
    assert [e["error"]["msg"] for e in by_code["NOAUTH"]] == [seen["noauth"]]
    assert [e["error"]["msg"] for e in by_code["READONLY"]] == [seen["readonly"]]
    assert len(by_code["OOM"]) == len(seen["oom"]) and all(e["redis"]["command"] == "SET" for e in by_code["OOM"])
    assert set(by_code) == {"WRONGTYPE", "ERR", "NOAUTH", "READONLY", "OOM"}, sorted(by_code)
    # Successful traffic is pairs without error: the pipeline's 97 GETs among them.
    gets = [e for e in entries if e["protocol"] == "redis" and e["redis"]["command"] == "GET" and not e.get("error")]
    assert len(gets) >= 97 and all(g["redis"]["reply"] == "null" for g in gets[:97])
    assert not [e for e in entries if e.get("error") and e["protocol"] != "redis"], "no other error"
    # tshark's RESP dissector reads the same error replies from the capture, but for the feature probes
    # redis-py sends on connecting (CLIENT SETINFO on a 7.0 server: an answer, not an error).
    texts = subprocess.run(["tshark", "-r", str(pcap), "-d", "tcp.port==6380,resp", "-d", "tcp.port==6381,resp",
                            "-Y", "resp.error", "-T", "fields", "-E", "aggregator=|", "-e", "resp.error"],
                           capture_output=True, text=True, check=True).stdout
    oracle = [t for line in texts.splitlines() for t in line.split("|") if t and "unknown subcommand" not in t]
    assert sorted(oracle) == sorted(e["error"]["msg"] for e in errors)
    probes = [e for e in entries if e["protocol"] == "redis" and e["redis"]["command"] == "CLIENT"]
    assert probes and all(p["redis"]["reply"] == "error" and not p.get("error") for p in probes)


def postgres_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"PostgreSQL's {name} is not installed (scripts/install-deps.sh installs it)"
    return found[-1]


def test_postgresql_errors_carry_the_sqlstate_the_client_was_given(tmp_path):
    # The server runs as `postgres`, which cannot reach pytest's own (root-only) directories.
    home = Path(tempfile.mkdtemp(prefix="faultline-pg-"))
    try:
        postgresql_errors(home, tmp_path / "pg.pcap")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def postgresql_errors(home, pcap):
    home.chmod(0o755)
    data = home / "data"
    data.mkdir()
    (home / "pw").write_text("s3cret\n")
    for p in (home, data, home / "pw"):
        shutil.chown(p, "postgres")
    tmp_path = home
    subprocess.run(["runuser", "-u", "postgres", "--", postgres_bin("initdb"), "-D", str(data), "-U", "postgres",
                    "--pwfile", str(tmp_path / "pw"), "--auth-host=scram-sha-256", "--auth-local=trust"],
                   check=True, capture_output=True)
    with open(data / "pg_hba.conf", "a") as f:
        f.write("host all all 0.0.0.0/0 scram-sha-256\n")
    with Lab() as lab:
        lab.serve(postgres_bin("postgres"), "-D", str(data), "-c", f"listen_addresses={SERVER4}", "-c", "port=5432",
              "-c", "max_connections=3", "-c", "superuser_reserved_connections=0", "-c",
              f"unix_socket_directories={tmp_path}", "-c", "ssl=off", user="postgres")
        lab.wait_listening(5432)
        env = ["env", "PGPASSWORD=s3cret", "PGCONNECT_TIMEOUT=10"]
        psql = [*env, "psql", "-h", SERVER4, "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=0", "-X", "-q"]
        with lab.capture(pcap, bpf="tcp port 5432"):
            said = {}
            for name, sql in [
                ("setup", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);"),
                ("missing", "SELECT * FROM nowhere;"),
                ("unique", "INSERT INTO t VALUES (1);"),
                ("timeout", "SET statement_timeout = 200; SELECT pg_sleep(2);"),
                ("notice", "DROP TABLE IF EXISTS nothing_here;"),
            ]:
                said[name] = client(lab, *psql, "-c", sql).stderr.strip()
            said["password"] = client(lab, "env", "PGPASSWORD=wrong", *psql[2:], "-c", "SELECT 1").stderr.strip()
            # Four clients hold connections at once: the fourth is one too many.
            holders = [subprocess.Popen(["ip", "netns", "exec", lab.c, *psql, "-c", "SELECT pg_sleep(3)"],
                                        stderr=subprocess.PIPE, text=True) for _ in range(3)]
            time.sleep(1.5)
            said["too_many"] = client(lab, *psql, "-c", "SELECT 1").stderr.strip()
            for h in holders:
                h.wait(timeout=30)
            extended = library(lab, "pg", SERVER4, "5432", "postgres", "s3cret", "SELECT 1", "SELECT * FROM nowhere")
            # COPY FROM STDIN: rows that fit, then rows of which one breaks the key (the COPY fails).
            for name, rows in [("copy", "2\n3\n"), ("copy_duplicate", "4\n1\n")]:
                said[name] = subprocess.run(["ip", "netns", "exec", lab.c, *psql, "-c", "COPY t FROM STDIN"],
                                            input=rows, capture_output=True, text=True, timeout=30).stderr.strip()
            # A user's Ctrl-C: psql sends a CancelRequest on a connection of its own; the query ends 57014.
            sleeper = subprocess.Popen(["ip", "netns", "exec", lab.c, *psql, "-c", "SELECT pg_sleep(5)"],
                                       stderr=subprocess.PIPE, text=True)
            time.sleep(1.5)
            sleeper.send_signal(signal.SIGINT)
            said["cancelled"] = sleeper.communicate(timeout=30)[1].strip()
            time.sleep(0.3)
    assert "nowhere" in said["missing"] and "duplicate key" in said["unique"], said
    assert "statement timeout" in said["timeout"] and "password authentication failed" in said["password"], said
    assert "too many clients" in said["too_many"] and "does not exist, skipping" in said["notice"], said
    assert extended == ["ok", "42P01"], extended
    assert said["copy"] == "" and "duplicate key" in said["copy_duplicate"], said
    assert "canceling statement due to user request" in said["cancelled"], said

    entries = analyze(pcap)
    errors = errors_of(entries, "postgresql")
    got = sorted((e["postgresql"]["sqlstate"], e["postgresql"]["command"]) for e in errors)
    # psql's simple queries, pg8000's extended protocol, and the startups refused.
    assert got == sorted([("42P01", "query"), ("23505", "query"), ("57014", "query"), ("28P01", "startup"),
                          ("53300", "startup"), ("42P01", "execute"), ("23505", "query"), ("57014", "query")]), \
        [e["error"] for e in errors]
    for e in errors:
        assert e["error"]["type"] == "postgresql" and e["error"]["msg"].startswith(e["postgresql"]["sqlstate"] + " ")
    [denied] = [e for e in errors if e["postgresql"]["sqlstate"] == "28P01"]
    assert denied["error"]["msg"] == '28P01 password authentication failed for user "postgres"'
    assert denied["postgresql"]["severity"] == "FATAL" and denied["postgresql"]["query"] == "postgres@postgres"
    [timeout] = [e for e in errors if e["error"]["msg"] == "57014 canceling statement due to statement timeout"]
    assert 150 <= timeout["elapsedTime"] < 2000, timeout
    [cancelled] = [e for e in errors if e["error"]["msg"] == "57014 canceling statement due to user request"]
    assert 1000 <= cancelled["elapsedTime"] < 5000, cancelled
    [copy] = [e for e in errors if e["postgresql"].get("query") == "COPY t FROM STDIN"]
    assert copy["error"]["msg"].startswith("23505 duplicate key"), copy
    # The notice (DROP … IF EXISTS) is no error; every other call paired without one.
    assert not [e for e in entries if e.get("error") and e["protocol"] != "postgresql"], "no other error"
    ok = [e for e in entries if e["protocol"] == "postgresql" and not e.get("error")]
    assert [e["postgresql"]["query"] for e in ok if "nothing_here" in e["postgresql"].get("query", "")] == \
        ["DROP TABLE IF EXISTS nothing_here;"], "the call that drew a NOTICE is a pair without error"
    assert len([e for e in ok if e["postgresql"]["command"] == "startup"]) >= 7
    # tshark's PostgreSQL dissector: the same SQLSTATEs in the capture's ErrorResponses.
    oracle = subprocess.run(["tshark", "-r", str(pcap), "-Y", 'pgsql.type == "Error"', "-T", "fields", "-E",
                             "aggregator=|", "-e", "pgsql.code"], capture_output=True, text=True, check=True).stdout
    assert sorted(c for line in oracle.splitlines() for c in line.split("|") if c) == sorted(s for s, _ in got)


def test_mysql_errors_carry_the_number_and_sqlstate_the_client_printed(tmp_path):
    home = Path(tempfile.mkdtemp(prefix="faultline-mysql-"))
    try:
        mysql_errors(home, tmp_path / "mysql.pcap")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def mysql_errors(home, pcap):
    data, sock = home / "data", home / "sock"
    subprocess.run(["mariadb-install-db", f"--datadir={data}", "--user=root", "--auth-root-authentication-method=socket",
                    "--skip-test-db"], check=True, capture_output=True)
    with Lab() as lab:
        lab.serve("mariadbd", "--no-defaults", f"--datadir={data}", "--user=root", f"--bind-address={SERVER4}",
              "--port=3306", f"--socket={sock}", "--max-connections=10", "--skip-name-resolve",
              f"--pid-file={home / 'pid'}", "--skip-log-bin", "--innodb-buffer-pool-size=16M")
        lab.wait_listening(3306)
        setup = ("CREATE DATABASE shop; CREATE USER 'app'@'%' IDENTIFIED BY 's3cret'; "
                 "GRANT ALL ON shop.* TO 'app'@'%'; CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (1);")
        subprocess.run(["ip", "netns", "exec", lab.s, "mariadb", "--no-defaults", "-S", str(sock), "-u", "root", "-e", setup],
                       check=True, capture_output=True)
        cli = ["mariadb", "--no-defaults", "-h", SERVER4, "-P", "3306", "-u", "app", "--skip-ssl"]
        with lab.capture(pcap, bpf="tcp port 3306"):
            said = {}
            for name, password, sql in [
                ("ok", "s3cret", "SELECT 1; SELECT * FROM shop.t"),
                ("denied", "wrong", "SELECT 1"),
                ("unknown_table", "s3cret", "SELECT * FROM shop.nowhere"),
                ("duplicate", "s3cret", "INSERT INTO shop.t VALUES (1)"),
            ]:
                said[name] = client(lab, *cli, f"-p{password}", "-e", sql).stderr.strip()
            many = library(lab, "mysql_many", SERVER4, "3306", "app", "s3cret", "13")
            time.sleep(0.3)
    assert said["ok"] == "", said
    printed = {k: re.search(r"ERROR (\d+) \((\w+)\)(?: at line \d+)?: (.*)", v) for k, v in said.items() if v}
    printed = {k: f"{m[1]} ({m[2]}) {m[3]}" for k, m in printed.items()}
    assert printed["denied"].startswith("1045 (28000)"), said
    assert printed["unknown_table"].startswith("1146 (42S02)"), said
    assert printed["duplicate"].startswith("1062 (23000)"), said
    assert many.count(1040) >= 1, many

    entries = analyze(pcap)
    errors = errors_of(entries, "mysql")
    got = sorted((e["mysql"]["code"], e["mysql"]["command"]) for e in errors)
    assert got == sorted([(1045, "login"), (1146, "COM_QUERY"), (1062, "COM_QUERY")] + [(1040, got[0][1])] * many.count(1040)), \
        [e["error"] for e in errors]
    # The number, SQLSTATE and message as the client printed them.
    for name, code in [("denied", 1045), ("unknown_table", 1146), ("duplicate", 1062)]:
        [e] = [e for e in errors if e["mysql"]["code"] == code]
        assert e["error"]["msg"] == printed[name], (e["error"], said[name])
        assert e["error"]["type"] == "mysql"
    assert not [e for e in entries if e.get("error") and e["protocol"] != "mysql"], "no other error"
    ok = [e for e in entries if e["protocol"] == "mysql" and not e.get("error")]
    assert [e["mysql"]["query"] for e in ok if e["mysql"]["command"] == "COM_QUERY" and "shop.t" in e["mysql"]["query"]] \
        == ["SELECT * FROM shop.t"]
    # tshark's MySQL dissector: the same error numbers in the capture.
    oracle = subprocess.run(["tshark", "-r", str(pcap), "-Y", "mysql.error_code", "-T", "fields", "-E", "aggregator=|",
                             "-e", "mysql.error_code"], capture_output=True, text=True, check=True).stdout
    assert sorted(int(c) for line in oracle.splitlines() for c in line.split("|") if c) == sorted(c for c, _ in got)


def test_amqp_errors_are_the_brokers_closes_and_returns(tmp_path):
    home = tmp_path / "rabbit"
    home.mkdir()
    (home / "rabbitmq.conf").write_text("loopback_users = none\ndefault_user = app\ndefault_pass = s3cret\n"
                                        "listeners.tcp.default = 5672\n")
    env = {"PATH": "/usr/lib/rabbitmq/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home),
           "RABBITMQ_NODENAME": "rabbit@localhost", "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
           "RABBITMQ_LOG_BASE": str(home / "log"), "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "plugins"), "RABBITMQ_NODE_IP_ADDRESS": SERVER4,
           "RABBITMQ_PID_FILE": str(home / "pid")}
    (home / "plugins").write_text("[].\n")
    pcap = tmp_path / "amqp.pcap"
    with Lab() as lab:
        p = subprocess.Popen(["ip", "netns", "exec", lab.s, "/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        lab.procs.append(p)
        try:
            lab.wait_listening(5672, tries=600)
            with lab.capture(pcap, bpf="tcp port 5672"):
                said = library(lab, "amqp", SERVER4, "5672", "app", "s3cret")
                time.sleep(0.3)
        finally:
            subprocess.run(["ip", "netns", "exec", lab.s, "/usr/lib/rabbitmq/bin/rabbitmqctl", "shutdown"], env=env,
                           capture_output=True, timeout=60)
            # Erlang's port mapper outlives the broker: whatever still runs in the namespace goes with it.
            pids = subprocess.run(["ip", "netns", "pids", lab.s], capture_output=True, text=True).stdout.split()
            subprocess.run(["kill", "-9", *pids], capture_output=True)
    assert "ACCESS_REFUSED" in said["login"], said
    assert said["good"] == "ok" and said["returned"] == "unroutable", said
    assert said["missing_queue"][0] == 404 and said["precondition"][0] == 406, said
    assert said["missing_exchange"][0] == 404, said

    entries = analyze(pcap)
    errors = errors_of(entries, "amqp")
    got = sorted((e["amqp"]["replyCode"], e["amqp"]["method"]) for e in errors)
    assert got == sorted([(403, "connection.start-ok"), (404, "queue.declare"), (406, "queue.declare"),
                          (312, "basic.publish"), (404, "basic.publish")]), [(e["amqp"], e["error"]) for e in errors]
    for e in errors:
        assert e["error"]["type"] == "amqp" and e["error"]["msg"] == f'{e["amqp"]["replyCode"]} {e["amqp"]["replyText"]}'
    [missing] = [e for e in errors if e["amqp"]["method"] == "queue.declare" and e["amqp"]["replyCode"] == 404]
    assert missing["error"]["msg"] == "404 " + said["missing_queue"][1]
    assert not [e for e in entries if e.get("error") and e["protocol"] != "amqp"], "no other error"
    ok = {e["amqp"]["method"] for e in entries if e["protocol"] == "amqp" and not e.get("error")}
    assert {"queue.declare", "basic.get", "channel.open", "confirm.select", "connection.close"} <= ok, ok
    # tshark's AMQP dissector: the same reply codes in the broker's closes and returns.
    oracle = subprocess.run(["tshark", "-r", str(pcap), "-Y", "amqp.method.arguments.reply_code && tcp.srcport == 5672",
                             "-T", "fields",
                             "-E", "aggregator=|", "-e", "amqp.method.arguments.reply_code"],
                            capture_output=True, text=True, check=True).stdout
    codes = sorted(int(c) for line in oracle.splitlines() for c in line.split("|") if c and int(c) != 200)
    assert codes == sorted(c for c, _ in got)


def kafka_home():
    r = subprocess.run([str(Path(__file__).resolve().parents[3] / "e2e" / "build-kafka.sh")], capture_output=True,
                       text=True, check=True)
    return Path(r.stdout.strip().splitlines()[-1])


def test_kafka_errors_are_the_brokers_codes_by_name(tmp_path):
    kafka = kafka_home() / "kafka"
    props = tmp_path / "server.properties"
    props.write_text("\n".join([
        "process.roles=broker,controller", "node.id=1", f"controller.quorum.voters=1@{SERVER4}:9093",
        f"listeners=PLAINTEXT://{SERVER4}:9092,CONTROLLER://{SERVER4}:9093",
        f"advertised.listeners=PLAINTEXT://{SERVER4}:9092", "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT", f"log.dirs={tmp_path / 'data'}",
        "auto.create.topics.enable=false", "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0"]) + "\n")
    # A second broker (no controller), so a partition has a follower to send a produce to by mistake.
    second = tmp_path / "second.properties"
    second.write_text("\n".join([
        "process.roles=broker", "node.id=2", f"controller.quorum.voters=1@{SERVER4}:9093",
        f"listeners=PLAINTEXT://{SERVER4}:9094", f"advertised.listeners=PLAINTEXT://{SERVER4}:9094",
        "controller.listener.names=CONTROLLER", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={tmp_path / 'data2'}", "auto.create.topics.enable=false", "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0", "offsets.topic.num.partitions=1"]) + "\n")
    for p in (props, second):
        subprocess.run([str(kafka), "kafka.tools.StorageTool", "format", "-t", "q1Sh-9_ISia_zwGINzRvyQ", "-c", str(p)],
                       check=True, capture_output=True)
    pcap = tmp_path / "kafka.pcap"
    with Lab() as lab:
        lab.serve(str(kafka), "kafka.Kafka", str(props))
        lab.serve(str(kafka), "kafka.Kafka", str(second))
        # Two JVMs and a KRaft quorum: a few seconds here, far longer on a loaded 2-core machine.
        lab.wait_listening(9092, tries=1800)
        lab.wait_listening(9094, tries=1800)
        library(lab, "kafka_replicated", f"{SERVER4}:9092")
        with lab.capture(pcap, bpf="tcp port 9092 or tcp port 9094"):
            said = library(lab, "kafka", f"{SERVER4}:9092")
            misdirected = library(lab, "kafka_follower", f"{SERVER4}:9092")
            time.sleep(0.3)
    assert said["again"] == "TOPIC_ALREADY_EXISTS", said
    assert said["produce"] == ["ok", "_MSG_TIMED_OUT"] or said["produce"][1] == "UNKNOWN_TOPIC_OR_PART", said
    assert said["out_of_range"] == "_AUTO_OFFSET_RESET" and said["consumed"] == ["one"], said
    assert misdirected["code"] == 6 and misdirected["leader"] != misdirected["follower"], misdirected

    entries = analyze(pcap)
    errors = [e for e in errors_of(entries, "kafka") if e["error"]["type"] == "kafka"]
    names = [e["kafka"]["errorName"] for e in errors]
    assert names.count("TOPIC_ALREADY_EXISTS") == 1, names
    assert names.count("OFFSET_OUT_OF_RANGE") >= 1, names
    assert names.count("UNKNOWN_TOPIC_OR_PARTITION") >= 1, names
    [follower] = [e for e in errors if e["kafka"]["errorName"] == "NOT_LEADER_OR_FOLLOWER"]
    assert follower["error"]["msg"] == "NOT_LEADER_OR_FOLLOWER Produce replicated-0", follower
    assert (follower["kafka"]["correlationId"], follower["kafka"]["clientId"]) == (4242, "raw")
    assert follower["dst"]["port"] == misdirected["port"]
    for e in errors:
        k = e["kafka"]
        assert e["error"]["type"] == "kafka" and e["error"]["msg"].startswith(f'{k["errorName"]} {k["api"]}'), e
    [again] = [e for e in errors if e["kafka"]["errorName"] == "TOPIC_ALREADY_EXISTS"]
    assert (again["kafka"]["api"], again["kafka"]["topic"]) == ("CreateTopics", "orders")
    unknown = [(e["kafka"]["api"], e["kafka"]["topic"]) for e in errors
               if e["kafka"]["errorName"] == "UNKNOWN_TOPIC_OR_PARTITION"]
    # `replicated` was known to both brokers before the capture began.
    assert set(unknown) == {("Metadata", "missing-topic")}, unknown
    # The rebalance is the protocol at work: its codes are on pairs, not errors.
    routine = [e for e in entries if e["protocol"] == "kafka" and not e.get("error") and e["kafka"].get("errorName")]
    assert {e["kafka"]["errorName"] for e in routine} <= {"MEMBER_ID_REQUIRED", "REBALANCE_IN_PROGRESS",
                                                            "UNSUPPORTED_VERSION", "LEADER_NOT_AVAILABLE"}, routine
    assert any(e["kafka"]["errorName"] == "MEMBER_ID_REQUIRED" for e in routine), "each consumer's first JoinGroup"
    assert {"Produce", "Fetch", "JoinGroup", "SyncGroup", "Heartbeat", "OffsetFetch", "FindCoordinator"} <= \
        {e["kafka"]["api"] for e in entries if e["protocol"] == "kafka"}
    others = [e for e in entries if e.get("error") and e["error"]["type"] != "kafka"]
    assert not others, [(e["protocol"], e.get("kafka"), e["error"]) for e in others]
    # tshark's Kafka dissector (Debian's 4.0) as the oracle, response by response, where it can read them:
    # it misreads Metadata v13 when a topic is there (codes like 15687) and does not know Fetch v16 — there
    # the client is the ground truth (librdkafka's _AUTO_OFFSET_RESET is its OFFSET_OUT_OF_RANGE).
    rows = subprocess.run(["tshark", "-r", str(pcap), "-d", "tcp.port==9094,kafka", "-Y", "kafka.request_frame",
                           "-T", "fields", "-E",
                           "aggregator=|", "-e", "kafka.api_key", "-e", "kafka.error"],
                          capture_output=True, text=True, check=True).stdout
    routine_codes = {(18, 35), (11, 79), (11, 27), (12, 27), (14, 27), (8, 27), (3, 5)}
    oracle = []
    for line in rows.splitlines():
        key, _, codes = line.partition("\t")
        key = int(key.split("|")[0])
        codes = [int(c) for c in codes.split("|") if c]
        if key == 1 or any(not -1 <= c <= 120 for c in codes):
            continue
        real = [c for c in codes if c != 0 and (key, c) not in routine_codes]
        if real:
            oracle.append(real[0])
    read = [e["kafka"]["errorCode"] for e in errors if e["kafka"]["api"] != "Fetch"]
    assert sorted(oracle) == sorted(read), (oracle, names)
    assert [e["kafka"]["api"] for e in errors if e["kafka"]["errorName"] == "OFFSET_OUT_OF_RANGE"] == ["Fetch"]
