//! Reads and writes of znodes for the rest of the node: each runs in the
//! current session with a time bound (see [`Registry::call`]).

use zookeeper::{Acl, CreateMode, ZkError, ZooKeeper};

use super::{layout, sessions, Record, Registry, RegistryError, ZnodeData};
use crate::shards::SlotMap;

impl Registry {
    /// Reads the znode at `path` and every znode below it, parents first.
    pub fn read_subtree(&self, path: &str) -> Result<Vec<Record>, RegistryError> {
        let path = path.to_string();
        self.call(move |zk| {
            let mut out = Vec::new();
            let mut todo = vec![path];
            while let Some(p) = todo.pop() {
                let data = match zk.get_data(&p, false) {
                    Ok((data, _)) => data,
                    Err(ZkError::NoNode) => continue,
                    Err(e) => return Err(e),
                };
                match zk.get_children(&p, false) {
                    Ok(children) => todo.extend(children.into_iter().map(|c| format!("{p}/{c}"))),
                    Err(ZkError::NoNode) => {}
                    Err(e) => return Err(e),
                }
                out.push(Record { path: p, data });
            }
            Ok(out)
        })
    }

    /// The names of the children of `path` (empty when it does not exist).
    pub fn children(&self, path: &str) -> Result<Vec<String>, RegistryError> {
        let path = path.to_string();
        self.call(move |zk| match zk.get_children(&path, false) {
            Err(ZkError::NoNode) => Ok(Vec::new()),
            other => other,
        })
    }

    /// Deletes `path` and everything below it.
    pub fn delete_subtree(&self, path: &str) -> Result<(), RegistryError> {
        let path = path.to_string();
        self.call(move |zk| delete_recursive(zk, &path))
    }

    /// The cluster's slot map, `None` when no root has written it yet.
    pub fn slot_map(&self, prefix: &str) -> Result<Option<SlotMap>, RegistryError> {
        let Some(data) = self.get(&layout::slots(prefix))? else {
            return Ok(None);
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| RegistryError::Unreadable(format!("{}: {e}", layout::slots(prefix))))
    }

    /// Writes `map` as the cluster's slot map unless one is there already;
    /// the map that is there then.
    pub fn create_slot_map(&self, prefix: &str, map: &SlotMap) -> Result<SlotMap, RegistryError> {
        let data = serde_json::to_vec(map).expect("a slot map serializes");
        self.write_versioned(&layout::slots(prefix), data, None)?;
        self.slot_map(prefix)?
            .ok_or_else(|| RegistryError::Unreadable(format!("{} vanished", layout::slots(prefix))))
    }

    /// The root's advertised address, as registered in its znode.
    pub fn find_root(&self, prefix: &str, root_id: u32) -> Option<String> {
        let data = self.get(&layout::root(prefix, root_id)).ok()??;
        let d: ZnodeData = serde_json::from_slice(&data).ok()?;
        Some(d.address)
    }

    /// [`Registry::find_root`] for a node that asks often: the root's znode
    /// is read with every heartbeat of the lease (in the same call, so it
    /// costs no thread and no call of its own), and asked for directly only
    /// when that reading is older than two heartbeats.
    pub fn follow_root(&self, prefix: &str, root_id: u32) -> Option<String> {
        let data = self.follow(&layout::root(prefix, root_id))?;
        let d: ZnodeData = serde_json::from_slice(&data?).ok()?;
        Some(d.address)
    }

    /// The data of `path` (`Some(None)`: it does not exist), as read with
    /// the latest heartbeat if that is at most two heartbeats old, else
    /// read now; `None` when ZooKeeper cannot tell. From the first call on,
    /// every heartbeat reads `path` too.
    pub fn follow(&self, path: &str) -> Option<Option<Vec<u8>>> {
        let fresh = {
            let mut followed = self.shared.followed.lock().unwrap();
            let period = sessions::heartbeat_period(self.shared.asked);
            match followed.entry(path.to_string()).or_insert(None) {
                Some((at, data)) if at.elapsed() <= 2 * period => Some(data.clone()),
                _ => None,
            }
        };
        fresh.or_else(|| self.get(path).ok())
    }

    /// Writes `data` at the persistent znode `path`, creating it (and its
    /// parents) when it does not exist yet.
    pub fn put(&self, path: &str, data: Vec<u8>) -> Result<(), RegistryError> {
        let (path, acl) = (path.to_string(), self.shared.acl.clone());
        self.call(move |zk| {
            ensure_parents(zk, &path, &acl)?;
            match zk.create(&path, data.clone(), acl.clone(), CreateMode::Persistent) {
                Ok(_) => Ok(()),
                Err(ZkError::NodeExists) => zk.set_data(&path, data, None).map(|_| ()),
                Err(e) => Err(e),
            }
        })
    }

    /// The data of `path` and its version (for a conditional write), or
    /// `None` when it does not exist.
    pub fn read_versioned(&self, path: &str) -> Result<Option<(Vec<u8>, i32)>, RegistryError> {
        let path = path.to_string();
        self.call(move |zk| match zk.get_data(&path, false) {
            Ok((data, stat)) => Ok(Some((data, stat.version))),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e),
        })
    }

    /// Writes `data` at `path` only if it is still at version `expected`
    /// (`None`: only if it does not exist yet); `Ok(false)` when someone
    /// wrote (or created) it first.
    pub fn write_versioned(
        &self,
        path: &str,
        data: Vec<u8>,
        expected: Option<i32>,
    ) -> Result<bool, RegistryError> {
        let (path, acl) = (path.to_string(), self.shared.acl.clone());
        self.call(move |zk| match expected {
            Some(version) => match zk.set_data(&path, data, Some(version)) {
                Ok(_) => Ok(true),
                Err(ZkError::BadVersion | ZkError::NoNode) => Ok(false),
                Err(e) => Err(e),
            },
            None => {
                ensure_parents(zk, &path, &acl)?;
                match zk.create(&path, data, acl.clone(), CreateMode::Persistent) {
                    Ok(_) => Ok(true),
                    Err(ZkError::NodeExists) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        })
    }

    /// Makes sure this session has a member znode in the election directory
    /// `dir` (ephemeral, sequential, holding `data`); returns its name.
    pub fn ensure_member(&self, dir: &str, data: Vec<u8>) -> Result<String, RegistryError> {
        let me = self.session().ok_or(RegistryError::NotConnected)?.id;
        let (dir, acl) = (dir.to_string(), self.shared.acl.clone());
        self.call(move |zk| {
            if let Ok(names) = zk.get_children(&dir, false) {
                for name in names {
                    let path = format!("{dir}/{name}");
                    if let Ok((old, stat)) = zk.get_data(&path, false) {
                        if stat.ephemeral_owner == me {
                            if old != data {
                                zk.set_data(&path, data.clone(), Some(stat.version))?;
                            }
                            return Ok(name);
                        }
                    }
                }
            }
            ensure_parents(zk, &format!("{dir}/member-"), &acl)?;
            let path = zk.create(
                &format!("{dir}/member-"),
                data,
                acl.clone(),
                CreateMode::EphemeralSequential,
            )?;
            Ok(path.rsplit('/').next().unwrap_or_default().to_string())
        })
    }

    /// The member znodes of the election directory `dir`: name and data, in
    /// the order they were created (their sequence numbers).
    pub fn members(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, RegistryError> {
        let dir = dir.to_string();
        self.call(move |zk| {
            let mut names = match zk.get_children(&dir, false) {
                Ok(names) => names,
                Err(ZkError::NoNode) => Vec::new(),
                Err(e) => return Err(e),
            };
            names.sort();
            let mut members = Vec::new();
            for name in names {
                match zk.get_data(&format!("{dir}/{name}"), false) {
                    Ok((data, _)) => members.push((name, data)),
                    Err(ZkError::NoNode) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(members)
        })
    }

    /// The data of `path`, or `None` when it does not exist.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let path = path.to_string();
        self.call(move |zk| match zk.get_data(&path, false) {
            Ok((data, _)) => Ok(Some(data)),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e),
        })
    }
}

fn delete_recursive(zk: &ZooKeeper, path: &str) -> Result<(), ZkError> {
    match zk.get_children(path, false) {
        Ok(children) => {
            for c in children {
                delete_recursive(zk, &format!("{path}/{c}"))?;
            }
        }
        Err(ZkError::NoNode) => return Ok(()),
        Err(e) => return Err(e),
    }
    match zk.delete(path, None) {
        Ok(()) | Err(ZkError::NoNode) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the parents of `path` that are missing, with empty data.
pub(super) fn ensure_parents(zk: &ZooKeeper, path: &str, acl: &[Acl]) -> Result<(), ZkError> {
    let mut at = String::new();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push('/');
        at.push_str(part);
        match zk.create(&at, Vec::new(), acl.to_vec(), CreateMode::Persistent) {
            Ok(_) | Err(ZkError::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
