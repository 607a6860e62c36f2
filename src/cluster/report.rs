//! What `treecache cluster` prints once the cluster is up: the tree, the
//! root group, what the start-up took, and what the processes take.

use std::time::Duration;

use treecache::NodesDoc;
use treecache_common::drawing::{draw_tree, Place};

use super::{address, id_of, wait, Cluster, Phases};

impl Cluster {
    /// Prints each shard: its slots, and where each of its members listens
    /// with the role the root's `/nodes` gives it.
    fn print_shards(&self, root_url: &str) {
        let doc: serde_json::Value = self
            .agent
            .get(&format!("{root_url}/nodes"))
            .call()
            .ok()
            .and_then(|r| serde_json::from_reader(r.into_reader()).ok())
            .unwrap_or_default();
        let map = treecache::shards::SlotMap::initial(self.args.root_shards);
        say!(
            "\n{} shards (root groups, their members started with the root's id, each with its own data directory):",
            self.args.root_shards
        );
        for s in 0..self.args.root_shards {
            let entry = wait::shard_entry(&doc, s);
            let ranges: Vec<[u32; 2]> = entry
                .and_then(|e| serde_json::from_value(e["ranges"].clone()).ok())
                .unwrap_or_else(|| map.ranges_of(s));
            let slots: Vec<String> = ranges.iter().map(|[lo, hi]| format!("{lo}-{hi}")).collect();
            say!("  shard {s}, slots {}:", slots.join(", "));
            let group = entry
                .map(|e| &e["root_group"])
                .filter(|g| g.is_array())
                .or((s == 0).then_some(&doc["root_group"]));
            let primary = entry.and_then(|e| e["primary"].as_str());
            for key in self.shard_members(s) {
                let at = address(self.args.base_port, self.port_of(key));
                say!(
                    "    {}://{at}  {}",
                    self.scheme(),
                    member_role(group, primary, &at)
                );
            }
        }
    }
}

/// What a member of a root group at `address` is, from its group's
/// members in `/nodes` and the address of its primary.
fn member_role(
    group: Option<&serde_json::Value>,
    primary: Option<&str>,
    address: &str,
) -> &'static str {
    let listed = group
        .and_then(|g| g.as_array())
        .and_then(|g| g.iter().find(|m| m["address"] == address));
    match listed {
        _ if primary == Some(address) => "primary",
        Some(m) if m["role"] == "root" => "primary",
        Some(m) if m["in_sync"] == true => "standby, in sync",
        Some(_) => "standby, catching up",
        None => "(not listed yet)",
    }
}

impl Cluster {
    /// Prints the cluster that came up: the tree, the root group, the
    /// steps of the start-up, what the processes take, and how to try it.
    pub(super) fn report(
        &self,
        doc: &NodesDoc,
        phases: &Phases,
        zookeeper_pid: Option<u32>,
        took: Duration,
    ) {
        let (scheme, root_url) = (self.scheme(), self.url(self.args.root_id));
        print_tree(doc, scheme);
        match self.args.root_shards {
            1 => print_root_group(&self.agent, &root_url, scheme),
            _ => self.print_shards(&root_url),
        }
        let usage = Usage::of(self.children.iter().map(|(_, c)| c.id()));
        let mine = Usage::of(std::iter::once(std::process::id()));
        let zookeeper = zookeeper_pid.map_or(String::new(), |pid| {
            let zk = Usage::of(std::iter::once(pid));
            format!(
                "; ZooKeeper: {:.1} MiB, {} threads",
                zk.rss_bytes as f64 / (1 << 20) as f64,
                zk.threads
            )
        });
        let at = |step: &str| {
            phases
                .iter()
                .find(|(s, _)| *s == step)
                .map_or(Duration::ZERO, |(_, at)| *at)
        };
        let steps: Vec<String> = phases
            .iter()
            .map(|(step, at)| format!("{step} {:.2} s", at.as_secs_f64()))
            .collect();
        say!("\nstart-up, from the command's start: {}", steps.join(", "));
        say!(
            "{} nodes up in {:.2} s ({:.2} s of it for ZooKeeper; all ready and live at {:.2} s); {} ({:.1} a process); this command: {} threads{zookeeper}. Try:\n  curl{cacert} {root_url}/\n  curl{cacert} -X PUT -H 'Content-Type: application/json' -d '{{\"value\": \"world\"}}' {root_url}/store/hello\n  curl{cacert} {}/store/hello\nPress Ctrl-C to stop.",
            doc.nodes.len(),
            took.as_secs_f64(),
            at("ZooKeeper up").as_secs_f64(),
            at("all live").as_secs_f64(),
            usage,
            usage.threads as f64 / usage.processes.max(1) as f64,
            mine.threads,
            self.url(doc.nodes.last().map_or(self.args.root_id, |n| id_of(&n.name))),
            cacert = self
                .args
                .tls
                .as_ref()
                .map_or(String::new(), |t| format!(" --cacert {}", t.ca.display())),
        );
    }
}

/// What the node processes take, from /proc: resident memory and threads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub processes: usize,
    pub rss_bytes: u64,
    pub threads: u64,
}

impl Usage {
    /// The sum over these processes (those gone already count nothing).
    pub fn of(pids: impl Iterator<Item = u32>) -> Usage {
        let mut usage = Usage::default();
        for pid in pids {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let (rss, threads) = parse_proc_status(&status);
            usage.processes += 1;
            usage.rss_bytes += rss;
            usage.threads += threads;
        }
        usage
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} node processes: {:.1} MiB resident in all, {} threads",
            self.processes,
            self.rss_bytes as f64 / (1 << 20) as f64,
            self.threads
        )
    }
}

/// `VmRSS` (in bytes) and `Threads` of a `/proc/PID/status`.
fn parse_proc_status(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

/// Prints the root group: the primary and each standby, with its URL.
fn print_root_group(agent: &ureq::Agent, root_url: &str, scheme: &str) {
    let doc = agent
        .get(&format!("{root_url}/nodes"))
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
        say!("  {scheme}://{}  {role}", m.address);
    }
}

/// Prints the tree as an indented drawing with each node's slot and URL.
fn print_tree(doc: &NodesDoc, scheme: &str) {
    say!(
        "\ntreecache: depth {}, {} nodes, root {}",
        doc.depth,
        doc.nodes.len(),
        doc.root
    );
    let lines = draw_tree(doc, |place| match place {
        Place::Node(n) => vec![
            format!("{} (slot {})", n.name, n.slot),
            format!("{scheme}://{}", n.address),
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

    #[test]
    fn a_shard_member_is_named_by_its_group() {
        let group = serde_json::json!([
            {"address": "a:1", "role": "root", "in_sync": true},
            {"address": "a:2", "role": "standby", "in_sync": true},
            {"address": "a:3", "role": "standby", "in_sync": false},
        ]);
        let role = |at| member_role(Some(&group), None, at);
        assert_eq!(
            [role("a:1"), role("a:2"), role("a:3"), role("a:4")],
            [
                "primary",
                "standby, in sync",
                "standby, catching up",
                "(not listed yet)"
            ]
        );
        assert_eq!(member_role(None, Some("a:9"), "a:9"), "primary");
    }

    #[test]
    fn usage_is_read_from_proc_status() {
        let status = "Name:\ttreecache\nVmRSS:\t    4096 kB\nThreads:\t23\n";
        assert_eq!(parse_proc_status(status), (4096 * 1024, 23));
        assert_eq!(parse_proc_status(""), (0, 0));
        let me = Usage::of(std::iter::once(std::process::id()));
        assert_eq!(me.processes, 1);
        assert!(me.rss_bytes > 0 && me.threads >= 1, "{me:?}");
        let text = Usage {
            processes: 255,
            rss_bytes: 1536 << 20,
            threads: 8000,
        }
        .to_string();
        assert_eq!(
            text,
            "255 node processes: 1536.0 MiB resident in all, 8000 threads"
        );
    }
}
