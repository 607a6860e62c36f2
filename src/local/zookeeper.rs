//! A throwaway ZooKeeper from the local installation (Debian's `zookeeper`
//! package), in a temporary directory on a port of our choosing. Used by
//! `treecache cluster`, the tests and the benchmark.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's package puts the server script.
pub const ZK_SERVER_SCRIPT: &str = "/usr/share/zookeeper/bin/zkServer.sh";

/// How to get ZooKeeper when it is missing.
pub const INSTALL_HINT: &str =
    "ZooKeeper is not installed: run `sudo apt-get update && sudo apt-get install -y zookeeper` (Debian/Ubuntu)";

/// Whether a ZooKeeper server answers `ruok` at `addr` within `wait`.
pub fn is_ok(addr: &str, wait: Duration) -> bool {
    let Ok(addrs) = std::net::ToSocketAddrs::to_socket_addrs(addr) else {
        return false;
    };
    addrs.into_iter().any(|a: SocketAddr| {
        let Ok(mut s) = TcpStream::connect_timeout(&a, wait) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(wait));
        let _ = s.set_write_timeout(Some(wait));
        let mut answer = String::new();
        s.write_all(b"ruok").is_ok() && s.read_to_string(&mut answer).is_ok() && answer == "imok"
    })
}

/// A running ZooKeeper server that we started; stopped on drop.
pub struct LocalZooKeeper {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl LocalZooKeeper {
    /// Starts a server on `127.0.0.1:port` with its data under `dir`, and waits
    /// until it answers `ruok`.
    pub fn start(port: u16, dir: &Path) -> Result<LocalZooKeeper, String> {
        if !Path::new(ZK_SERVER_SCRIPT).exists() {
            return Err(INSTALL_HINT.to_string());
        }
        std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut zk = LocalZooKeeper {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        zk.spawn()?;
        Ok(zk)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let config = self.dir.join("zoo.cfg");
        let text = format!(
            "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\n\
             clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
             4lw.commands.whitelist=ruok,stat,mntr,srvr\nminSessionTimeout=1000\nmaxSessionTimeout=30000\n",
            self.dir.join("data").display(),
            self.port
        );
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = std::fs::File::create(self.dir.join("zookeeper.log"))
            .map_err(|e| format!("zookeeper.log: {e}"))?;
        let mut command = Command::new(ZK_SERVER_SCRIPT);
        crate::local::children::die_with_parent(&mut command);
        let child = command
            .arg("start-foreground")
            .arg(&config)
            .env("ZOO_LOG_DIR", &self.dir)
            .env("ZOO_LOG4J_PROP", "WARN,CONSOLE")
            .env(
                "JVMFLAGS",
                "-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {ZK_SERVER_SCRIPT}: {e}"))?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if is_ok(&self.address(), Duration::from_millis(500)) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "ZooKeeper exited ({status}); see {}",
                    self.dir.join("zookeeper.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "ZooKeeper did not answer on port {} within 30 s; see {}",
            self.port,
            self.dir.join("zookeeper.log").display()
        ))
    }

    /// Stops the server (its data stays, so `restart` brings the same state back).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }
}

impl Drop for LocalZooKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}
