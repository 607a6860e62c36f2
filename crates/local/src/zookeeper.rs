//! A throwaway ZooKeeper from the local installation (Debian's `zookeeper`
//! package), in a temporary directory on a port of our choosing: one
//! server ([`LocalZooKeeper`]), or an ensemble of several on loopback
//! ([`LocalEnsemble`]) whose members can be stopped and started one at a
//! time. Used by `treecache cluster`, the tests and the benchmark.
//!
//! Every server ticks every 500 ms and grants session timeouts from 1 s to
//! 30 s, so that a node's 2 s session is real. It takes any number of
//! connections from one address (`maxClientCnxns=0`: a local tree of 1,023
//! nodes opens as many sessions from 127.0.0.1), writes its transaction log
//! without syncing it to disk (`forceSync=no`: its data is thrown away, and
//! a thousand sessions starting at once would otherwise wait on the disk;
//! a server killed and restarted still finds what the kernel had), and
//! queues up to 10,000 requests before it throttles clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
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
    four_letters(addr, "ruok", wait).is_some_and(|answer| answer == "imok")
}

/// Whether the ZooKeeper server at `addr` serves clients (a member of an
/// ensemble does only while it is in a quorum): its `srvr` names its mode.
pub fn is_serving(addr: &str, wait: Duration) -> bool {
    four_letters(addr, "srvr", wait).is_some_and(|answer| answer.contains("Mode: "))
}

/// The answer of the server at `addr` to a four-letter command.
fn four_letters(addr: &str, command: &str, wait: Duration) -> Option<String> {
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(addr).ok()?;
    addrs.into_iter().find_map(|a: SocketAddr| {
        let mut s = TcpStream::connect_timeout(&a, wait).ok()?;
        let _ = s.set_read_timeout(Some(wait));
        let _ = s.set_write_timeout(Some(wait));
        let mut answer = String::new();
        s.write_all(command.as_bytes()).ok()?;
        s.read_to_string(&mut answer).ok()?;
        Some(answer)
    })
}

/// Ports on loopback that were free a moment ago, distinct.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// How long a server may take to start serving.
const START_WAIT: Duration = Duration::from_secs(30);

/// A member of an ensemble: its id and the `server.N=` lines of all members.
#[derive(Clone)]
struct Membership {
    myid: u32,
    servers: String,
}

/// A running ZooKeeper server that we started; stopped on drop.
pub struct LocalZooKeeper {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    member: Option<Membership>,
    /// Whoever started the server has been asked to stop: a server still
    /// starting is then given up at once.
    stopping: fn() -> bool,
}

/// For servers that nobody stops while they start.
fn never() -> bool {
    false
}

impl LocalZooKeeper {
    /// Starts a server on `127.0.0.1:port` with its data under `dir`, and waits
    /// until it answers `ruok`.
    pub fn start(port: u16, dir: &Path) -> Result<LocalZooKeeper, String> {
        LocalZooKeeper::start_unless(port, dir, never)
    }

    /// [`LocalZooKeeper::start`], given up as soon as `stopping` says so
    /// (a stop signal to whoever starts the server).
    pub fn start_unless(
        port: u16,
        dir: &Path,
        stopping: fn() -> bool,
    ) -> Result<LocalZooKeeper, String> {
        if !Path::new(ZK_SERVER_SCRIPT).exists() {
            return Err(INSTALL_HINT.to_string());
        }
        std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut zk = LocalZooKeeper {
            port,
            dir: dir.to_path_buf(),
            child: None,
            member: None,
            stopping,
        };
        zk.spawn()?;
        Ok(zk)
    }

    /// Whether the server process runs (it may not serve yet).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs (the script execs Java).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server and waits until it serves.
    fn spawn(&mut self) -> Result<(), String> {
        self.launch()?;
        self.wait_serving()
    }

    /// Starts the server process.
    fn launch(&mut self) -> Result<(), String> {
        let config = self.dir.join("zoo.cfg");
        let mut text = format!(
            "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\n\
             clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
             4lw.commands.whitelist=ruok,stat,mntr,srvr\nminSessionTimeout=1000\nmaxSessionTimeout=30000\n\
             forceSync=no\nglobalOutstandingLimit=10000\n",
            self.dir.join("data").display(),
            self.port
        );
        if let Some(member) = &self.member {
            let myid = self.dir.join("data").join("myid");
            std::fs::write(&myid, format!("{}\n", member.myid))
                .map_err(|e| format!("{}: {e}", myid.display()))?;
            text.push_str(&member.servers);
        }
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        // Appended to: a restarted server's log follows its earlier one.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zookeeper.log"))
            .map_err(|e| format!("zookeeper.log: {e}"))?;
        let mut command = Command::new(ZK_SERVER_SCRIPT);
        crate::children::die_with_parent(&mut command);
        // A process group of its own: Ctrl-C at the terminal reaches the
        // nodes and us, not the server, which we stop once the nodes have
        // closed their sessions.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
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
        Ok(())
    }

    /// Waits until the server answers (a member of an ensemble: until it
    /// serves, which takes a quorum).
    fn wait_serving(&mut self) -> Result<(), String> {
        let until = Instant::now() + START_WAIT;
        while Instant::now() < until {
            // `treecache cluster` asked to stop (SIGINT or SIGTERM) meanwhile.
            if (self.stopping)() {
                return Err("stopped while ZooKeeper was starting".into());
            }
            let up = if self.member.is_some() {
                is_serving(&self.address(), Duration::from_millis(500))
            } else {
                is_ok(&self.address(), Duration::from_millis(500))
            };
            if up {
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
            "ZooKeeper did not answer on port {} within {START_WAIT:?}; see {}",
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

/// An ensemble of ZooKeeper servers on loopback, each with its own
/// directory, `myid`, client port and peer and election ports; stopped on
/// drop. Clients connect with [`LocalEnsemble::connect_string`].
pub struct LocalEnsemble {
    members: Vec<LocalZooKeeper>,
}

impl LocalEnsemble {
    /// Starts `size` servers (member `i` in `dir/zk<i>`, numbered from 1),
    /// and waits until every one serves.
    pub fn start(size: usize, dir: &Path) -> Result<LocalEnsemble, String> {
        if !Path::new(ZK_SERVER_SCRIPT).exists() {
            return Err(INSTALL_HINT.to_string());
        }
        let ports = free_ports(3 * size)?;
        let servers: String = (0..size)
            .map(|i| {
                format!(
                    "server.{}=127.0.0.1:{}:{}\n",
                    i + 1,
                    ports[3 * i + 1],
                    ports[3 * i + 2]
                )
            })
            .collect();
        let mut members = Vec::with_capacity(size);
        for i in 0..size {
            let dir = dir.join(format!("zk{}", i + 1));
            std::fs::create_dir_all(dir.join("data"))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            members.push(LocalZooKeeper {
                port: ports[3 * i],
                dir,
                child: None,
                member: Some(Membership {
                    myid: i as u32 + 1,
                    servers: servers.clone(),
                }),
                stopping: never,
            });
        }
        let mut ensemble = LocalEnsemble { members };
        for m in &mut ensemble.members {
            m.launch()?;
        }
        for m in &mut ensemble.members {
            m.wait_serving()?;
        }
        Ok(ensemble)
    }

    /// How many servers the ensemble has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The client address of member `i` (from 1).
    pub fn address(&self, i: usize) -> String {
        self.members[i - 1].address()
    }

    /// `h:p,h:p,h:p`: every member, in order.
    pub fn connect_string(&self) -> String {
        let all: Vec<String> = self.members.iter().map(LocalZooKeeper::address).collect();
        all.join(",")
    }

    /// Stops member `i` (from 1); its data stays.
    pub fn stop(&mut self, i: usize) {
        self.members[i - 1].stop();
    }

    /// Starts member `i` (from 1) again, and waits until it serves (which
    /// takes a quorum of the others).
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.members[i - 1].restart()
    }

    /// Whether member `i` (from 1) runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i - 1].is_running()
    }
}
