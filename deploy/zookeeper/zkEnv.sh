# Environment of Debian's ZooKeeper scripts (zkServer.sh, zkCli.sh) in the
# shellcheck disable=SC2034 # read by the scripts that source this file
# local ZooKeeper image: sourced by them, in place of Debian's file, which
# names /etc/zookeeper/conf. Here the configuration is the one the entry
# point writes to $ZOO_CONF_DIR, and the log goes to the console, as in the
# official image.
ZOO_CONF_DIR=${ZOO_CONF_DIR:-/conf}
ZOOCFGDIR=$ZOO_CONF_DIR
ZOOCFG=$ZOOCFGDIR/zoo.cfg
ZOO_LOG_DIR=${ZOO_LOG_DIR:-/logs}
ZOO_LOG4J_PROP=${ZOO_LOG4J_PROP:-INFO,CONSOLE}
JAVA=/usr/bin/java
# The jar's manifest names no logging backend: slf4j's binding to log4j 1.2
# is added, and log4j takes the first log4j.properties on the class path,
# one mounted in $ZOO_CONF_DIR, else the image's.
CLASSPATH="$ZOOCFGDIR:/usr/share/zookeeper/conf:/usr/share/java/zookeeper.jar"
CLASSPATH="$CLASSPATH:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
# Heap bounds in MB, as in the official image.
SERVER_JVMFLAGS="-Xmx${ZK_SERVER_HEAP:-1000}m ${SERVER_JVMFLAGS:-}"
CLIENT_JVMFLAGS="-Xmx${ZK_CLIENT_HEAP:-256}m ${CLIENT_JVMFLAGS:-}"
JVMFLAGS="-Dzookeeper.root.logger=$ZOO_LOG4J_PROP ${JVMFLAGS:-}"
