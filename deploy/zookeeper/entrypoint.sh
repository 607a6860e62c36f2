#!/bin/bash
# Entry point of the local ZooKeeper image (scripts/zookeeper-image.sh).
#
# Takes the settings that the official `zookeeper` image takes, so that a
# Compose file or Vagrantfile written for that image runs this one unchanged:
#
#   ZOO_MY_ID                   this server's id in an ensemble (default 1),
#                               written to $ZOO_DATA_DIR/myid once
#   ZOO_SERVERS                 the ensemble, entries separated by spaces:
#                               server.1=zk1:2888:3888;2181 server.2=...
#                               (unset: one standalone server, client port 2181)
#   ZOO_TICK_TIME (2000)  ZOO_INIT_LIMIT (5)  ZOO_SYNC_LIMIT (2)
#   ZOO_MAX_CLIENT_CNXNS (60)  ZOO_STANDALONE_ENABLED (true)
#   ZOO_ADMINSERVER_ENABLED (true)  ZOO_4LW_COMMANDS_WHITELIST (srvr, ruok)
#   ZOO_AUTOPURGE_PURGEINTERVAL (0)  ZOO_AUTOPURGE_SNAPRETAINCOUNT (3)
#   ZOO_CFG_EXTRA               more key=value settings, separated by spaces
#   ZOO_CONF_DIR (/conf)  ZOO_DATA_DIR (/data)  ZOO_DATA_LOG_DIR (/datalog)
#   ZOO_LOG_DIR (/logs)   JVMFLAGS  SERVER_JVMFLAGS
#
# A zoo.cfg already in $ZOO_CONF_DIR (mounted there) is used as it is. The
# server runs as the user zookeeper; its log goes to the console.
set -euo pipefail

: "${ZOO_CONF_DIR:=/conf}" "${ZOO_DATA_DIR:=/data}" "${ZOO_DATA_LOG_DIR:=/datalog}"
: "${ZOO_LOG_DIR:=/logs}"
export ZOO_CONF_DIR ZOO_DATA_DIR ZOO_DATA_LOG_DIR ZOO_LOG_DIR

write_config() {
  local file=$1 entry
  {
    echo "# Written by the image's entry point from its ZOO_* variables."
    echo "dataDir=$ZOO_DATA_DIR"
    echo "dataLogDir=$ZOO_DATA_LOG_DIR"
    echo "tickTime=${ZOO_TICK_TIME:-2000}"
    echo "initLimit=${ZOO_INIT_LIMIT:-5}"
    echo "syncLimit=${ZOO_SYNC_LIMIT:-2}"
    echo "maxClientCnxns=${ZOO_MAX_CLIENT_CNXNS:-60}"
    echo "standaloneEnabled=${ZOO_STANDALONE_ENABLED:-true}"
    echo "admin.enableServer=${ZOO_ADMINSERVER_ENABLED:-true}"
    echo "autopurge.purgeInterval=${ZOO_AUTOPURGE_PURGEINTERVAL:-0}"
    echo "autopurge.snapRetainCount=${ZOO_AUTOPURGE_SNAPRETAINCOUNT:-3}"
    echo "4lw.commands.whitelist=${ZOO_4LW_COMMANDS_WHITELIST:-srvr, ruok}"
    if [ -n "${ZOO_SERVERS:-}" ]; then
      # Each entry names its client port after a ';' (server.N=h:p:p;2181).
      for entry in $ZOO_SERVERS; do
        case $entry in
          server.*=*) echo "$entry" ;;
          *)
            echo "entrypoint: ZOO_SERVERS entry '$entry' is not server.N=host:port:port;clientport" >&2
            return 1
            ;;
        esac
      done
    else
      echo "clientPort=2181"
    fi
    for entry in ${ZOO_CFG_EXTRA:-}; do
      echo "$entry"
    done
  } >"$file"
}

mkdir -p "$ZOO_CONF_DIR" "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR" "$ZOO_LOG_DIR"
if [ ! -f "$ZOO_CONF_DIR/zoo.cfg" ]; then
  write_config "$ZOO_CONF_DIR/zoo.cfg.new"
  mv "$ZOO_CONF_DIR/zoo.cfg.new" "$ZOO_CONF_DIR/zoo.cfg"
fi
if [ ! -f "$ZOO_DATA_DIR/myid" ]; then
  echo "${ZOO_MY_ID:-1}" >"$ZOO_DATA_DIR/myid"
fi

# Started as root (the default): hand the directories to the user zookeeper
# and run the command as that user.
if [ "$(id -u)" = 0 ]; then
  chown -R zookeeper:zookeeper "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR" "$ZOO_LOG_DIR"
  exec setpriv --reuid=zookeeper --regid=zookeeper --init-groups -- "$@"
fi
exec "$@"
