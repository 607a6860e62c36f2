//! Waiting for the cluster to come up, and stopping it: the command's own
//! calls to its nodes (the slots it reserves, `/ready`, `/nodes`), each
//! given up when a node exits, a stop is asked for, or [`UP_WITHIN`] passes.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use treecache::auth::{ClusterKey, Signed};
use treecache::{node_name, stop_requested, NodesDoc, TlsFiles, AUTH_HEADER, JOIN_PATH};
use treecache_local::children;

use super::{label, UP_WITHIN};

/// The agent of the command's own calls to its nodes: HTTPS trusting the
/// cluster's CA when it runs TLS.
pub(super) fn nodes_agent(tls: Option<&TlsFiles>) -> Result<ureq::Agent, String> {
    let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        let config = treecache::read_ca(&tls.ca).map_err(|e| format!("--tls-ca: {e}"))?;
        agent = agent.tls_config(config);
    }
    Ok(agent.build())
}

/// Joins each of `ids` to the root (its URL and its advertised address) in
/// this order, under the address it will listen on, so that slots follow
/// ids (see the module documentation). Waits for the root to take joins
/// first.
pub(super) fn reserve_slots(
    agent: &ureq::Agent,
    (root_url, root_address): (&str, &str),
    ids: &[u32],
    address: impl Fn(u32) -> String,
    key: &ClusterKey,
    children: &mut [(u32, Child)],
) -> Result<(), String> {
    let until = Instant::now() + UP_WITHIN;
    for &id in ids {
        let body = serde_json::json!({ "name": node_name(id), "address": address(id) }).to_string();
        loop {
            if stop_requested() {
                return Err("stopped before the cluster was up".into());
            }
            if let Some((id, status)) = exited(children) {
                return Err(format!("{} exited during start-up ({status})", label(id)));
            }
            // Signed with the cluster key, as a node's own join is, for the
            // root at the address it advertises.
            let auth = key.sign(
                root_address,
                &Signed {
                    method: "POST",
                    path: JOIN_PATH,
                    headers: &NoHeaders,
                    body: body.as_bytes(),
                },
            );
            let last = match agent
                .post(&format!("{root_url}{JOIN_PATH}"))
                .set("Content-Type", "application/json")
                .set(AUTH_HEADER, &auth)
                .send_string(&body)
            {
                Ok(_) => break,
                // 503: the root does not take joins yet.
                Err(ureq::Error::Status(503, _)) | Err(ureq::Error::Transport(_)) => {
                    "the root does not take joins yet".to_string()
                }
                Err(ureq::Error::Status(status, r)) => {
                    return Err(format!(
                        "the root refused the slot of {}: {status} {}",
                        node_name(id),
                        r.into_string().unwrap_or_default()
                    ))
                }
            };
            if Instant::now() > until {
                return Err(format!("{last} after {} s", UP_WITHIN.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Waits until every node of `urls` answers `GET /ready` with 200.
pub(super) fn wait_ready(
    agent: &ureq::Agent,
    urls: &[(u32, String)],
    children: &mut [(u32, Child)],
) -> Result<(), String> {
    let until = Instant::now() + UP_WITHIN;
    let mut waiting: Vec<&(u32, String)> = urls.iter().collect();
    while !waiting.is_empty() {
        if stop_requested() {
            return Err("stopped before the cluster was up".into());
        }
        if let Some((id, status)) = exited(children) {
            return Err(format!("{} exited during start-up ({status})", label(id)));
        }
        waiting.retain(|(_, url)| agent.get(&format!("{url}/ready")).call().is_err());
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > until {
            let names: Vec<String> = waiting
                .iter()
                .take(5)
                .map(|(id, _)| node_name(*id))
                .collect();
            return Err(format!(
                "{} nodes were not ready within {} s ({}, ...)",
                waiting.len(),
                UP_WITHIN.as_secs(),
                names.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub(super) fn exited(children: &mut [(u32, Child)]) -> Option<(u32, std::process::ExitStatus)> {
    children
        .iter_mut()
        .find_map(|(id, c)| c.try_wait().ok().flatten().map(|s| (*id, s)))
}

pub(super) fn stop_all(children: &mut Vec<(u32, Child)>) {
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

/// Polls the root's `/nodes` until `n` nodes have joined and each is live
/// (its liveness znode is there).
pub(super) fn wait_for_tree(
    agent: &ureq::Agent,
    root_url: &str,
    n: usize,
    children: &mut [(u32, Child)],
) -> Result<NodesDoc, String> {
    poll_nodes(
        agent,
        root_url,
        children,
        "the cluster did not come up",
        |doc: &NodesDoc| {
            let live = doc.nodes.iter().filter(|n| n.live == Some(true)).count();
            match (doc.nodes.len(), live) {
                (joined, live) if joined == n && live == n => Ok(doc.clone()),
                (joined, live) => Err(format!("{joined} of {n} nodes joined, {live} live")),
            }
        },
    )
}

/// Polls the root's `/nodes` until `done` takes it (`Err` says what is
/// still missing), for [`UP_WITHIN`] at most, giving up when a child exits
/// or a stop is asked for.
fn poll_nodes<D: serde::de::DeserializeOwned, T>(
    agent: &ureq::Agent,
    root_url: &str,
    children: &mut [(u32, Child)],
    failure: &str,
    mut done: impl FnMut(&D) -> Result<T, String>,
) -> Result<T, String> {
    let until = Instant::now() + UP_WITHIN;
    let mut last = String::from("no answer yet");
    while Instant::now() < until {
        if stop_requested() {
            return Err("stopped before the cluster was up".into());
        }
        if let Some((id, status)) = exited(children) {
            return Err(format!("{} exited during start-up ({status})", label(id)));
        }
        match agent.get(&format!("{root_url}/nodes")).call() {
            Ok(r) => match serde_json::from_reader::<_, D>(r.into_reader()) {
                Ok(doc) => match done(&doc) {
                    Ok(t) => return Ok(t),
                    Err(missing) => last = missing,
                },
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        // A /nodes document of a thousand nodes is some 100 KiB: asked for
        // less often in a big tree.
        std::thread::sleep(Duration::from_millis(50.max(children.len() as u64 / 4)));
    }
    Err(format!(
        "{failure} within {} s ({last})",
        UP_WITHIN.as_secs()
    ))
}

/// Polls the root's `/nodes` until `k` standbys are in sync.
pub(super) fn wait_for_standbys(
    agent: &ureq::Agent,
    root_url: &str,
    k: usize,
    children: &mut [(u32, Child)],
) -> Result<(), String> {
    if k == 0 {
        return Ok(());
    }
    poll_nodes(
        agent,
        root_url,
        children,
        "the standbys were not in sync",
        |doc: &NodesDoc| {
            let in_sync = doc
                .root_group
                .iter()
                .flatten()
                .filter(|m| m.role == "standby" && m.in_sync)
                .count();
            match in_sync >= k {
                true => Ok(()),
                false => Err(format!("{in_sync} of {k} standbys in sync")),
            }
        },
    )
}

/// The entry of shard `s` in a `/nodes` document's `shards`, if it is there.
pub(super) fn shard_entry(doc: &Value, s: u32) -> Option<&Value> {
    doc["shards"]
        .as_array()?
        .iter()
        .find(|entry| entry["shard"] == s)
}

/// Polls the root's `/nodes` until each shard of `firsts` names as its
/// primary the address given with it (its first member's).
pub(super) fn wait_for_shard_primaries(
    agent: &ureq::Agent,
    root_url: &str,
    firsts: &[(u32, String)],
    children: &mut [(u32, Child)],
) -> Result<(), String> {
    poll_nodes(
        agent,
        root_url,
        children,
        "the shards were not led by their first members",
        |doc: &Value| {
            let waiting: Vec<String> = firsts
                .iter()
                .filter(|(s, first)| {
                    shard_entry(doc, *s).is_none_or(|e| e["primary"] != first.as_str())
                })
                .map(|(s, _)| format!("shard {s}"))
                .collect();
            match waiting.is_empty() {
                true => Ok(()),
                false => Err(format!("no primary yet for {}", waiting.join(", "))),
            }
        },
    )
}

/// Polls the root's `/nodes` until each of `shards` shows `k` standbys in
/// sync in its `root_group`.
pub(super) fn wait_for_shard_standbys(
    agent: &ureq::Agent,
    root_url: &str,
    shards: &[u32],
    k: usize,
    children: &mut [(u32, Child)],
) -> Result<(), String> {
    if k == 0 || shards.is_empty() {
        return Ok(());
    }
    poll_nodes(
        agent,
        root_url,
        children,
        "the shards' standbys were not in sync",
        |doc: &Value| {
            let behind: Vec<String> = shards
                .iter()
                .filter_map(|&s| {
                    let entry = shard_entry(doc, s);
                    let primary = entry.map(|e| &e["primary"]);
                    let group = entry.and_then(|e| e["root_group"].as_array());
                    // Not the primary, should /nodes list it late as a standby.
                    let in_sync = group.into_iter().flatten().filter(|m| {
                        m["role"] == "standby"
                            && m["in_sync"] == true
                            && Some(&m["address"]) != primary
                    });
                    let n = in_sync.count();
                    (n < k).then(|| format!("shard {s}: {n} of {k} in sync"))
                })
                .collect();
            match behind.is_empty() {
                true => Ok(()),
                false => Err(behind.join(", ")),
            }
        },
    )
}

/// No headers: a join the cluster command sends carries none that are signed.
struct NoHeaders;

impl treecache::Headers for NoHeaders {
    fn header(&self, _: &str) -> Option<&str> {
        None
    }
}
