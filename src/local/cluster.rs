//! `treecache cluster`: a whole cluster on this machine, for trying treecache out.
//!
//! Uses the ZooKeeper at `--zookeeper`, or starts one from the local
//! installation when none answers there; starts the N nodes as child
//! processes on `127.0.0.1:{base-port + id}`; waits until all have joined;
//! starts the standbys of the root (`--standbys K`, each with the root's id,
//! on `127.0.0.1:{base-port + N + k}` with its own data directory) and waits
//! until they are in sync; prints the tree and the URLs; and stops
//! everything it started on Ctrl-C or SIGTERM (and, through the
//! parent-death signal, even if it is killed).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{node_name, parse_host_port};
use crate::local::children;
use crate::local::zookeeper::{self as zk_local, LocalZooKeeper};
use crate::process;
use crate::tree::Tree;
use crate::wire::NodesDoc;
use treecache_common::drawing::{draw_tree, Place};

/// Prints a line, ignoring a closed stdout: whoever started us may have stopped
/// reading, and the cluster must still stop everything it started.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The same for stderr.
macro_rules! esay {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Options of `treecache cluster`.
#[derive(Debug, PartialEq, Eq)]
pub struct ClusterArgs {
    pub depth: u32,
    pub root_id: u32,
    pub base_port: u16,
    pub zookeeper: String,
    pub log_level: String,
    /// The root's data directory; by default one in the cluster's
    /// temporary directory, removed at exit. Standby `k` keeps its data
    /// beside it, in `{data_dir}-standby-{k}`.
    pub data_dir: Option<std::path::PathBuf>,
    /// Standbys of the root.
    pub standbys: u32,
}

/// The most standbys `treecache cluster` starts.
const MAX_STANDBYS: u32 = 8;
/// Standby `k` is the child `STANDBY + k` (the children are known by id).
const STANDBY: u32 = 1 << 20;

impl ClusterArgs {
    pub fn parse(mut args: pico_args::Arguments) -> Result<ClusterArgs, String> {
        /// An optional flag's value, an error naming the flag if it does not parse.
        fn opt<T: std::str::FromStr>(
            args: &mut pico_args::Arguments,
            name: &'static str,
        ) -> Result<Option<T>, String>
        where
            T::Err: std::fmt::Display,
        {
            args.opt_value_from_str(name)
                .map_err(|e| format!("{name}: {e}"))
        }
        let depth: u32 = opt(&mut args, "--depth")?.unwrap_or(3);
        if !(1..=Tree::MAX_DEPTH).contains(&depth) {
            return Err(format!(
                "--depth: must be between 1 and {} (got {depth})",
                Tree::MAX_DEPTH
            ));
        }
        let tree = Tree::new(depth);
        let root_id: u32 = opt(&mut args, "--root-id")?.unwrap_or(1);
        if !tree.contains_id(root_id) {
            return Err(format!(
                "--root-id: must be between 1 and {} (got {root_id})",
                tree.capacity()
            ));
        }
        let standbys: u32 = opt(&mut args, "--standbys")?.unwrap_or(1);
        if standbys > MAX_STANDBYS {
            return Err(format!(
                "--standbys: at most {MAX_STANDBYS} (got {standbys})"
            ));
        }
        let base_port: u16 = opt(&mut args, "--base-port")?.unwrap_or(5000);
        if base_port as usize + tree.capacity() + standbys as usize > u16::MAX as usize {
            return Err(format!(
                "--base-port: {base_port} + {} is past the last port",
                tree.capacity() + standbys as usize
            ));
        }
        let zookeeper: String =
            opt(&mut args, "--zookeeper")?.unwrap_or_else(|| "127.0.0.1:2181".into());
        parse_host_port(&zookeeper).map_err(|m| format!("--zookeeper: {m} (got {zookeeper:?})"))?;
        let log_level: String = opt(&mut args, "--log-level")?.unwrap_or_else(|| "info".into());
        let data_dir: Option<std::path::PathBuf> = opt(&mut args, "--data-dir")?;
        if let Some(extra) = args.finish().first() {
            return Err(format!(
                "{}: is not a flag of treecache cluster",
                extra.to_string_lossy()
            ));
        }
        Ok(ClusterArgs {
            depth,
            root_id,
            base_port,
            zookeeper,
            log_level,
            data_dir,
            standbys,
        })
    }
}

/// Runs the cluster until a stop signal; returns the exit status.
pub fn run(args: ClusterArgs) -> i32 {
    process::catch_stop_signals();
    let started = Instant::now();
    let tree = Tree::new(args.depth);
    let dir = std::env::temp_dir().join(format!("treecache-cluster-{}", std::process::id()));

    let _zookeeper = if zk_local::is_ok(&args.zookeeper, Duration::from_secs(1)) {
        say!("Using the ZooKeeper at {}", args.zookeeper);
        None
    } else {
        let port = args
            .zookeeper
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .expect("validated host:port");
        say!(
            "No ZooKeeper answers at {}; starting one on port {port} in {}",
            args.zookeeper,
            dir.display()
        );
        match LocalZooKeeper::start(port, &dir.join("zookeeper")) {
            Ok(zk) => Some(zk),
            Err(e) => {
                esay!("treecache cluster: {e}");
                return 1;
            }
        }
    };
    let zk_up = started.elapsed();
    let data_dir = match &args.data_dir {
        Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
        None => dir.join("root-data"),
    };

    // The nodes' cluster key: made for this run, in our temporary directory.
    let key_file = dir.join("cluster.key");
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| crate::auth::write_random_key(&key_file))
    {
        esay!("treecache cluster: cannot make a cluster key: {e}");
        return 1;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            esay!("treecache cluster: cannot find my own binary: {e}");
            return 1;
        }
    };
    let mut ids: Vec<u32> = (1..=tree.capacity() as u32)
        .filter(|&i| i != args.root_id)
        .collect();
    ids.insert(0, args.root_id);
    let mut children: Vec<(u32, Child)> = Vec::new();
    let spawn = |children: &mut Vec<(u32, Child)>, key: u32| -> bool {
        let (id, port, data) = match key.checked_sub(STANDBY) {
            Some(k) => (
                args.root_id,
                args.base_port as u32 + tree.capacity() as u32 + k,
                Some(standby_data_dir(&data_dir, k)),
            ),
            None => (
                key,
                args.base_port as u32 + key,
                (key == args.root_id).then(|| data_dir.clone()),
            ),
        };
        let mut command = Command::new(&exe);
        command
            .arg("node")
            .args(["--id", &id.to_string()])
            .args(["--depth", &args.depth.to_string()])
            .args(["--root-id", &args.root_id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--advertise", &format!("127.0.0.1:{port}")])
            .args(["--zookeeper", &args.zookeeper])
            .args(["--startup-delay", "0"])
            .args(["--log-level", &args.log_level])
            .arg("--cluster-key-file")
            .arg(&key_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(data) = data {
            command.arg("--data-dir").arg(data);
        }
        children::die_with_parent(&mut command);
        match command.spawn() {
            Ok(mut child) => {
                prefix_output(&mut child, &label(key));
                children.push((key, child));
                true
            }
            Err(e) => {
                esay!("treecache cluster: starting {}: {e}", label(key));
                false
            }
        }
    };
    for id in ids {
        if !spawn(&mut children, id) {
            stop_all(&mut children);
            return 1;
        }
    }

    let root_url = format!("http://127.0.0.1:{}", args.base_port as u32 + args.root_id);
    // The standbys start once the root leads the group (the first member
    // to write the group's state leads), and the cluster is up once they
    // are in sync.
    let up = wait_for_tree(&root_url, tree.capacity(), &mut children).and_then(|doc| {
        for k in 1..=args.standbys {
            if !spawn(&mut children, STANDBY + k) {
                return Err(format!("could not start standby {k}"));
            }
        }
        wait_for_standbys(&root_url, args.standbys as usize, &mut children)?;
        Ok(doc)
    });
    let status = match up {
        Ok(doc) => {
            print_tree(&doc);
            print_root_group(&root_url);
            say!(
                "\n{} nodes up in {:.2} s ({:.2} s of it for ZooKeeper). Try:\n  curl {root_url}/\n  curl -X PUT -H 'Content-Type: application/json' -d '{{\"value\": \"world\"}}' {root_url}/store/hello\n  curl http://127.0.0.1:{}/store/hello\nPress Ctrl-C to stop.",
                doc.nodes.len(),
                started.elapsed().as_secs_f64(),
                zk_up.as_secs_f64(),
                args.base_port as u32 + doc.nodes.last().map_or(args.root_id, |n| id_of(&n.name)),
            );
            while !process::stop_requested() {
                if let Some((id, status)) = exited(&mut children) {
                    esay!(
                        "treecache cluster: {} exited ({status}); stopping",
                        label(id)
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            0
        }
        Err(e) => {
            esay!("treecache cluster: {e}");
            1
        }
    };
    say!("Stopping the cluster");
    stop_all(&mut children);
    drop(_zookeeper);
    // Our temporary directory: ZooKeeper's data, and the root's unless --data-dir.
    let _ = std::fs::remove_dir_all(&dir);
    status
}

/// Standby `k`'s data directory, beside the root's.
fn standby_data_dir(root: &std::path::Path, k: u32) -> std::path::PathBuf {
    let mut name = root.as_os_str().to_os_string();
    name.push(format!("-standby-{k}"));
    std::path::PathBuf::from(name)
}

/// A child's name in the output: `NODE-3`, or `standby-2`.
fn label(key: u32) -> String {
    match key.checked_sub(STANDBY) {
        Some(k) => format!("standby-{k}"),
        None => node_name(key),
    }
}

fn id_of(name: &str) -> u32 {
    name.trim_start_matches("NODE-").parse().unwrap_or(1)
}

/// Copies a child's output to ours, each line prefixed with its name.
fn prefix_output(child: &mut Child, name: &str) {
    let out = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let err = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for stream in [out, err].into_iter().flatten() {
        let name = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                esay!("{name:>8} | {line}");
            }
        });
    }
}

fn exited(children: &mut [(u32, Child)]) -> Option<(u32, std::process::ExitStatus)> {
    children
        .iter_mut()
        .find_map(|(id, c)| c.try_wait().ok().flatten().map(|s| (*id, s)))
}

fn stop_all(children: &mut Vec<(u32, Child)>) {
    for (_, child) in children.iter() {
        children::signal(child.id(), libc::SIGTERM);
    }
    let until = Instant::now() + Duration::from_secs(3);
    for (_, child) in children.iter_mut() {
        while child.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    children.clear();
}

/// Polls the root's `/nodes` until `n` nodes have joined (60 s at most).
fn wait_for_tree(
    root_url: &str,
    n: usize,
    children: &mut [(u32, Child)],
) -> Result<NodesDoc, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    let until = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer yet");
    while Instant::now() < until {
        if process::stop_requested() {
            return Err("stopped before the cluster was up".into());
        }
        if let Some((id, status)) = exited(children) {
            return Err(format!("{} exited during start-up ({status})", label(id)));
        }
        match agent.get(&format!("{root_url}/nodes")).call() {
            Ok(r) => match serde_json::from_reader::<_, NodesDoc>(r.into_reader()) {
                Ok(doc) if doc.nodes.len() == n => return Ok(doc),
                Ok(doc) => last = format!("{} of {n} nodes joined", doc.nodes.len()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("the cluster did not come up within 60 s ({last})"))
}

/// Polls the root's `/nodes` until `k` standbys are in sync (60 s at most).
fn wait_for_standbys(
    root_url: &str,
    k: usize,
    children: &mut [(u32, Child)],
) -> Result<(), String> {
    if k == 0 {
        return Ok(());
    }
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    let until = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer yet");
    while Instant::now() < until {
        if process::stop_requested() {
            return Err("stopped before the cluster was up".into());
        }
        if let Some((id, status)) = exited(children) {
            return Err(format!("{} exited during start-up ({status})", label(id)));
        }
        match agent.get(&format!("{root_url}/nodes")).call() {
            Ok(r) => match serde_json::from_reader::<_, NodesDoc>(r.into_reader()) {
                Ok(doc) => {
                    let in_sync = doc
                        .root_group
                        .unwrap_or_default()
                        .iter()
                        .filter(|m| m.role == "standby" && m.in_sync)
                        .count();
                    if in_sync >= k {
                        return Ok(());
                    }
                    last = format!("{in_sync} of {k} standbys in sync");
                }
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "the standbys were not in sync within 60 s ({last})"
    ))
}

/// Prints the root group: the primary and each standby, with its URL.
fn print_root_group(root_url: &str) {
    let doc = ureq::get(&format!("{root_url}/nodes"))
        .call()
        .ok()
        .and_then(|r| serde_json::from_reader::<_, NodesDoc>(r.into_reader()).ok());
    let group = doc.and_then(|d| d.root_group).unwrap_or_default();
    if group.len() < 2 {
        return;
    }
    say!("\nroot group (the root's id, each with its own data directory):");
    for m in &group {
        let role = match (m.role.as_str(), m.in_sync) {
            ("root", _) => "primary",
            (_, true) => "standby, in sync",
            (_, false) => "standby, catching up",
        };
        say!("  http://{}  {role}", m.address);
    }
}

/// Prints the tree as an indented drawing with each node's slot and URL.
fn print_tree(doc: &NodesDoc) {
    say!(
        "\ntreecache: depth {}, {} nodes, root {}",
        doc.depth,
        doc.nodes.len(),
        doc.root
    );
    let lines = draw_tree(doc, |place| match place {
        Place::Node(n) => vec![
            format!("{} (slot {})", n.name, n.slot),
            format!("http://{}", n.address),
        ],
        Place::Missing(name) => vec![name.to_string(), "(not in the node list)".to_string()],
        Place::Free(slot) => vec![format!("(free slot {slot})")],
    });
    for line in lines {
        say!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ClusterArgs, String> {
        ClusterArgs::parse(pico_args::Arguments::from_vec(
            args.iter().map(Into::into).collect(),
        ))
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            (a.depth, a.root_id, a.base_port, a.zookeeper.as_str()),
            (3, 1, 5000, "127.0.0.1:2181")
        );
        let a = parse(&["--depth", "2", "--root-id", "3", "--base-port", "7000"]).unwrap();
        assert_eq!((a.depth, a.root_id, a.base_port), (2, 3, 7000));
        let a = parse(&["--depth=2", "--base-port=7000"]).unwrap();
        assert_eq!((a.depth, a.base_port), (2, 7000));
        assert_eq!(a.data_dir, None);
        assert_eq!(a.standbys, 1);
        let a = parse(&["--data-dir", "/tmp/x", "--standbys", "2"]).unwrap();
        assert_eq!(a.standbys, 2);
        let data = a.data_dir.unwrap();
        assert_eq!(data.display().to_string(), "/tmp/x");
        assert_eq!(
            standby_data_dir(&data, 2).display().to_string(),
            "/tmp/x-standby-2"
        );
        assert_eq!(label(STANDBY + 2), "standby-2");
        assert_eq!(label(3), "NODE-3");
    }

    #[test]
    fn bad_flags_are_named() {
        assert!(parse(&["--depth", "0"]).unwrap_err().starts_with("--depth"));
        assert!(parse(&["--root-id", "4", "--depth", "2"])
            .unwrap_err()
            .starts_with("--root-id"));
        assert!(parse(&["--zookeeper", "nowhere"])
            .unwrap_err()
            .starts_with("--zookeeper"));
        assert!(parse(&["--bogus"]).unwrap_err().starts_with("--bogus"));
        assert!(parse(&["--standbys", "9"])
            .unwrap_err()
            .starts_with("--standbys"));
        assert!(parse(&["--base-port", "65530"])
            .unwrap_err()
            .starts_with("--base-port"));
    }
}
