#!/usr/bin/env bash
# Apache Kafka's broker from Maven Central (e2e/kafka/pom.xml: kafka_2.13 and what it needs), once:
# the jars and a `kafka` launcher (java -cp …) in a cached directory, which it prints. Nothing is
# compiled; under a minute cold.
. "$(dirname "$0")/go-cache.sh"
cached "kafka-4.4.0" kafka "$here/kafka/pom.xml"
echo "fetching Kafka 4.4.0 and its dependencies from Maven Central (cached in $bin)" >&2
(cd "$here/kafka" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$bin.tmp/lib") >&2
cat > "$bin.tmp/kafka" <<'SH'
#!/bin/sh
# kafka CLASS ARGS…: a Kafka class (kafka.Kafka, kafka.tools.StorageTool) on the cached jars.
exec java -Xmx256m -cp "$(dirname "$0")/lib/*" "$@"
SH
chmod +x "$bin.tmp/kafka"
publish
