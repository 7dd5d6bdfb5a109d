#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for development and tests.
#   kafka.sh fetch    copy the pinned broker classpath from Maven into the lib cache
#   kafka.sh start    format storage once, start the broker in the background, wait until it listens
#   kafka.sh stop     stop the broker this state directory started
#   kafka.sh status   exit 0 when the broker is listening
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_STATE_DIR (.chime/kafka),
# KAFKA_LIB_DIR (.chime/kafka-lib), JAVA_HOME (a Java 17 is looked up when unset).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-9093}
state=${KAFKA_STATE_DIR:-$root/.chime/kafka}
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
lib=${KAFKA_LIB_DIR:-$root/.chime/kafka-lib}/$version

find_java() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME/bin/java"; return; fi
  for d in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64 /usr/lib/jvm/java-17-openjdk \
           /usr/lib/jvm/temurin-17-jdk-amd64 /usr/lib/jvm/temurin-17-jdk-arm64; do
    [ -x "$d/bin/java" ] && { echo "$d/bin/java"; return; }
  done
  command -v java || { echo "kafka.sh: no Java 17 found; set JAVA_HOME" >&2; exit 1; }
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

fetch() {
  [ -f "$lib/.complete" ] && return 0
  command -v mvn >/dev/null || { echo "kafka.sh: Maven (mvn) is required to fetch the Kafka jars" >&2; exit 1; }
  echo "kafka.sh: fetching Kafka $version jars (one-off)..." >&2
  rm -rf "$lib" && mkdir -p "$lib"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib" >&2
  touch "$lib/.complete"
}

start() {
  if listening "$port"; then
    echo "kafka.sh: a broker already listens on 127.0.0.1:$port; reusing it" >&2
    return 0
  fi
  fetch
  local java; java=$(find_java)
  mkdir -p "$state/data"
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$cport|g" -e "s|@DATA_DIR@|$state/data|g" \
    "$here/server.properties" > "$state/server.properties"
  if [ ! -f "$state/data/meta.properties" ]; then
    [ -f "$state/cluster.id" ] || "$java" -cp "$lib/*" kafka.tools.StorageTool random-uuid > "$state/cluster.id"
    "$java" -cp "$lib/*" -Dlog4j2.configurationFile="$here/log4j2.properties" kafka.tools.StorageTool format \
      --standalone -t "$(cat "$state/cluster.id")" -c "$state/server.properties" --ignore-formatted >&2
  fi
  # setsid: the broker outlives this script and is stopped explicitly with `kafka.sh stop`. nice: on a shared
  # host the executor, not the broker, must win a contended core (services/devstack/priority.py).
  setsid nice -n "${KAFKA_NICE:-10}" "$java" -Xms512m -Xmx1g -XX:+UseParallelGC -XX:ParallelGCThreads=2 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$lib/*" kafka.Kafka "$state/server.properties" \
    > "$state/kafka.log" 2>&1 < /dev/null &
  echo $! > "$state/kafka.pid"
  for _ in $(seq 1 240); do
    if listening "$port"; then echo "kafka.sh: broker up on 127.0.0.1:$port" >&2; return 0; fi
    if ! kill -0 "$(cat "$state/kafka.pid")" 2>/dev/null; then
      echo "kafka.sh: broker exited; last log lines:" >&2; tail -n 40 "$state/kafka.log" >&2; exit 1
    fi
    sleep 0.25
  done
  echo "kafka.sh: broker did not listen within 60 s; see $state/kafka.log" >&2
  exit 1
}

stop() {
  [ -f "$state/kafka.pid" ] || return 0
  local pid; pid=$(cat "$state/kafka.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$state/kafka.pid"
  echo "kafka.sh: broker on 127.0.0.1:$port stopped" >&2
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) listening "$port" ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
