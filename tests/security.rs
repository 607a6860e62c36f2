//! Security against real node processes: node-to-node calls without the
//! cluster key (forged, garbled, too old, replayed, signed for another node)
//! are refused and change nothing; client tokens; one process per node id;
//! bad key files, and key files open to others.
//!
//! The signatures crafted here (`treecache_harness::signing`) are made from
//! the format documented in docs/security.md, independently of the node's
//! code.

use std::time::Duration;

use serde_json::{json, Value};
use treecache_harness::signing::{now_ms, sign};
use treecache_harness::{http, wait_until, Cluster};

/// Sends a request to the node at `url`, signed for that node with `key`
/// at `t` when given.
fn send(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    signed: Option<(&[u8], u64)>,
) -> http::Answer {
    let mut all: Vec<(&str, String)> = headers.iter().map(|(n, v)| (*n, v.to_string())).collect();
    if let Some((key, t)) = signed {
        all.push((
            "X-Treecache-Auth",
            sign(key, address_of(url), method, path, headers, body, t),
        ));
    }
    all.push(("Content-Type", "application/json".into()));
    let refs: Vec<(&str, &str)> = all.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let body = (method != "GET").then_some(body);
    http::request(method, &format!("{url}{path}"), body, &refs)
}

/// What a forged call must not change: each node's own copy of `keys`,
/// the tree, and the counters of caches and invalidations.
fn state(cluster: &Cluster, keys: &[&str]) -> Value {
    let mut nodes = serde_json::Map::new();
    for id in cluster.ids() {
        let url = cluster.url(id);
        let copies: Vec<Value> = keys
            .iter()
            .map(|k| {
                let (status, body) = http::get(&format!("{url}/store/{}?local=true", http::enc(k)));
                json!([status, body])
            })
            .collect();
        let metrics = http::request("GET", &format!("{url}/metrics"), None, &[]).text();
        let counters: Vec<&str> = metrics
            .lines()
            .filter(|l| {
                l.starts_with("treecache_invalidations_received_total")
                    || l.starts_with("treecache_store_keys")
                    || l.starts_with("treecache_cache_bytes")
                    || l.starts_with("treecache_evictions_total")
            })
            .collect();
        nodes.insert(
            id.to_string(),
            json!({ "copies": copies, "counters": counters }),
        );
    }
    let mut tree = cluster.nodes_document();
    for node in tree["nodes"].as_array_mut().unwrap() {
        node.as_object_mut().unwrap().remove("live");
    }
    json!({ "nodes": nodes, "tree": tree })
}

/// The `host:port` of a node's base URL: the address it advertises (the
/// harness's nodes advertise the address they listen on).
fn address_of(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, address)| address)
}

fn error_of(answer: &http::Answer) -> String {
    answer.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error: {} {}", answer.status, answer.text()))
        .to_string()
}

/// A forged call: the node it goes to, method, path, headers, body.
type Forged<'a> = (u32, &'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>);

/// A call signed for one node and sent to another: the node it is signed
/// for, the node it goes to, method, path, headers, body.
type Misdirected<'a> = (
    u32,
    u32,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a [u8],
);

/// A depth-3 cluster with `k` cached along the path to a leaf.
fn cached_cluster() -> (Cluster, u32, u32) {
    let cluster = Cluster::start(3);
    let leaf = cluster.at_slot(3);
    let middle = cluster.at_slot(1);
    assert_eq!(
        http::put(&format!("{}/store/k", cluster.url(1)), &json!("v1")).0,
        200
    );
    assert_eq!(
        http::get(&format!("{}/store/k", cluster.url(leaf))),
        (200, json!({"key": "k", "value": "v1"}))
    );
    (cluster, leaf, middle)
}

#[test]
fn forged_node_to_node_calls_are_refused_and_change_nothing() {
    let (cluster, leaf, middle) = cached_cluster();
    let before = state(&cluster, &["k"]);
    let wrong_key = b"this is not the cluster key, but long enough".as_slice();
    let leaf_slot = cluster.slot_of(leaf).to_string();

    for signed in [None, Some((wrong_key, now_ms()))] {
        let mut forged: Vec<Forged> = Vec::new();
        for id in cluster.ids() {
            forged.push((
                id,
                "POST",
                "/internal/invalidate".into(),
                vec![],
                br#"{"key":"k","version":99999999999999999}"#.to_vec(),
            ));
            forged.push((id, "POST", "/internal/flush".into(), vec![], b"{}".to_vec()));
        }
        // The middle node's child in the leaf's slot says it dropped k: a
        // write would then skip the leaf, which would serve v1 for good.
        forged.push((
            middle,
            "POST",
            "/internal/evicted".into(),
            vec![],
            format!(r#"{{"keys":["k"],"slot":{leaf_slot}}}"#).into_bytes(),
        ));
        // A fill that claims the leaf's slot from another address: the
        // middle node would send the leaf's invalidations there.
        forged.push((
            middle,
            "GET",
            "/internal/fill/k".into(),
            vec![
                ("X-Treecache-Child-Slot", leaf_slot.as_str()),
                ("X-Treecache-Child-Name", "NODE-9"),
                ("X-Treecache-Child-Address", "127.0.0.1:9"),
            ],
            Vec::new(),
        ));
        // A fill of a key the middle node does not hold: the fill it would
        // pass upstream is checked by the worker that would pass it.
        forged.push((
            middle,
            "GET",
            "/internal/fill/held-nowhere".into(),
            vec![],
            Vec::new(),
        ));
        forged.push((
            1,
            "POST",
            "/nodes/join".into(),
            vec![],
            format!(r#"{{"name":"NODE-{leaf}","address":"127.0.0.1:9"}}"#).into_bytes(),
        ));
        for (id, method, path, headers, body) in &forged {
            let answer = send(&cluster.url(*id), method, path, headers, body, signed);
            assert_eq!(
                answer.status,
                401,
                "{method} {path} at NODE-{id} ({}): {}",
                if signed.is_some() {
                    "wrong key"
                } else {
                    "unsigned"
                },
                answer.text()
            );
            assert!(!error_of(&answer).is_empty());
            assert!(answer.header("www-authenticate").is_some());
        }
    }
    assert_eq!(
        state(&cluster, &["k"]),
        before,
        "a refused call changed something"
    );

    // The directory still reaches the leaf: a write is seen there at once.
    assert_eq!(
        http::put(&format!("{}/store/k", cluster.url(leaf)), &json!("v2")).0,
        200
    );
    assert_eq!(
        http::get(&format!("{}/store/k", cluster.url(leaf))).1["value"],
        json!("v2")
    );
}

#[test]
fn signed_calls_pass_and_old_or_replayed_ones_do_not() {
    let (cluster, leaf, middle) = cached_cluster();
    let key = cluster
        .key
        .clone()
        .expect("the harness's clusters have a key");
    let body = br#"{"key":"nothing-here","version":1}"#;
    let url = cluster.url(leaf);

    // Signed now: taken (it drops a key nobody holds).
    let ok = send(
        &url,
        "POST",
        "/internal/invalidate",
        &[],
        body,
        Some((&key, now_ms())),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());

    let before = state(&cluster, &["k"]);
    // 31 s old, and 31 s ahead: refused.
    for t in [now_ms() - 31_000, now_ms() + 31_000] {
        let stale = send(
            &url,
            "POST",
            "/internal/invalidate",
            &[],
            br#"{"key":"k","version":99999999999999999}"#,
            Some((&key, t)),
        );
        assert_eq!(stale.status, 401, "{}", stale.text());
        assert!(error_of(&stale).contains("30 s"), "{}", stale.text());
    }
    // A signed header changed on the way (the budget): refused.
    let t = now_ms();
    let header = sign(
        &key,
        &cluster.address(leaf),
        "POST",
        "/internal/invalidate",
        &[("X-Treecache-Budget-Ms", "100")],
        br#"{"key":"k","version":99999999999999999}"#,
        t,
    );
    let altered = http::request(
        "POST",
        &format!("{url}/internal/invalidate"),
        Some(br#"{"key":"k","version":99999999999999999}"#),
        &[
            ("X-Treecache-Budget-Ms", "100000"),
            ("X-Treecache-Auth", &header),
        ],
    );
    assert_eq!(altered.status, 401, "{}", altered.text());

    // A release notice replayed within the window: the second is refused.
    let notice = format!(
        r#"{{"keys":["not-cached"],"slot":{}}}"#,
        cluster.slot_of(leaf)
    );
    let header = sign(
        &key,
        &cluster.address(middle),
        "POST",
        "/internal/evicted",
        &[],
        notice.as_bytes(),
        now_ms(),
    );
    let replay = || {
        http::request(
            "POST",
            &format!("{}/internal/evicted", cluster.url(middle)),
            Some(notice.as_bytes()),
            &[("X-Treecache-Auth", &header)],
        )
    };
    let first = replay();
    assert_eq!(first.status, 200, "{}", first.text());
    let second = replay();
    assert_eq!(second.status, 401, "{}", second.text());
    assert!(error_of(&second).contains("already"), "{}", second.text());
    assert_eq!(state(&cluster, &["k"]), before);
}

#[test]
fn a_call_signed_for_another_node_is_refused() {
    let (cluster, leaf, middle) = cached_cluster();
    let key = cluster
        .key
        .clone()
        .expect("the harness's clusters have a key");
    let leaf_slot = cluster.slot_of(leaf).to_string();
    // Valid calls, each signed for the node `for_id`, to be sent to `to_id`.
    let t = now_ms();
    let call = |for_id: u32, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        sign(
            &key,
            &cluster.address(for_id),
            method,
            path,
            headers,
            body,
            t,
        )
    };
    let send_to = |to_id: u32,
                   auth: &str,
                   method: &str,
                   path: &str,
                   headers: &[(&str, &str)],
                   body: &[u8]| {
        let mut all = headers.to_vec();
        all.extend([
            ("X-Treecache-Auth", auth),
            ("Content-Type", "application/json"),
        ]);
        let body = (method != "GET").then_some(body);
        http::request(method, &format!("{}{path}", cluster.url(to_id)), body, &all)
    };
    let invalidate = br#"{"key":"k","version":99999999999999999}"#.as_slice();
    let fill_headers = [
        ("X-Treecache-Child-Slot", leaf_slot.as_str()),
        ("X-Treecache-Child-Name", "NODE-9"),
        ("X-Treecache-Child-Address", "127.0.0.1:9"),
    ];
    let join = format!(r#"{{"name":"NODE-{leaf}","address":"127.0.0.1:9"}}"#);
    let misdirected: Vec<Misdirected> = vec![
        // A flush and an invalidation for the leaf, sent to its parent
        // and to the root, which hold k too.
        (leaf, middle, "POST", "/internal/flush", &[], b"{}"),
        (
            leaf,
            middle,
            "POST",
            "/internal/invalidate",
            &[],
            invalidate,
        ),
        (leaf, 1, "POST", "/internal/flush", &[], b"{}"),
        // A fill for the root (claiming the leaf's slot from another
        // address), sent to the middle node.
        (1, middle, "GET", "/internal/fill/k", &fill_headers, b""),
        // A join for the middle node (where it is answered 421), sent to
        // the root, where it would move the leaf.
        (middle, 1, "POST", "/nodes/join", &[], join.as_bytes()),
    ];
    let before = state(&cluster, &["k"]);
    for (for_id, to_id, method, path, headers, body) in &misdirected {
        let auth = call(*for_id, method, path, headers, body);
        let answer = send_to(*to_id, &auth, method, path, headers, body);
        let what = format!("{method} {path} signed for NODE-{for_id}, sent to NODE-{to_id}");
        assert_eq!(answer.status, 401, "{what}: {}", answer.text());
        let error = error_of(&answer);
        assert!(
            error.contains(&format!("signed for {}", cluster.address(*for_id)))
                && error.contains(&cluster.address(*to_id)),
            "{what}: {error}"
        );
        assert_eq!(answer.header("www-authenticate"), Some("Treecache-HMAC"));
    }
    assert_eq!(
        state(&cluster, &["k"]),
        before,
        "a call signed for another node changed something"
    );

    // Calls signed so, sent to the nodes they are for, are taken: the
    // flush signed for the leaf drops the leaf's copy and no other.
    let flush = call(leaf, "POST", "/internal/flush", &[], b"{}");
    let taken = send_to(leaf, &flush, "POST", "/internal/flush", &[], b"{}");
    assert_eq!(taken.status, 200, "{}", taken.text());
    let local = |id: u32| http::get(&format!("{}/store/k?local=true", cluster.url(id))).0;
    assert_eq!((local(leaf), local(middle)), (404, 200));
    let fill = call(1, "GET", "/internal/fill/k", &fill_headers, b"");
    let filled = send_to(1, &fill, "GET", "/internal/fill/k", &fill_headers, b"");
    // The root answers (the slot it names is not a child of the root: it
    // reads without being recorded).
    assert_eq!(filled.status, 200, "{}", filled.text());
    // The tree reaches the leaf as before: a write is seen there at once.
    assert_eq!(
        http::put(&format!("{}/store/k", cluster.url(1)), &json!("v2")).0,
        200
    );
    assert_eq!(
        http::get(&format!("{}/store/k", cluster.url(leaf))).1["value"],
        json!("v2")
    );
}

#[test]
fn internal_calls_change_state_only_where_their_role_allows() {
    let (cluster, leaf, middle) = cached_cluster();
    let key = cluster.key.clone().unwrap();
    let signed = |id: u32, method: &str, path: &str, body: &[u8]| {
        send(
            &cluster.url(id),
            method,
            path,
            &[],
            body,
            Some((&key, now_ms())),
        )
    };
    // The root keeps its primary copy through an invalidation and a flush.
    let a = signed(
        1,
        "POST",
        "/internal/invalidate",
        br#"{"key":"k","version":1}"#,
    );
    assert_ne!(a.status, 200, "{}", a.text());
    assert_eq!(signed(1, "POST", "/internal/flush", b"{}").status, 200);
    assert_eq!(
        http::get(&format!("{}/store/k?local=true", cluster.url(1))).1["value"],
        json!("v1")
    );
    // An eviction notice from a slot that is not a child: refused.
    let other_slot = if cluster.slot_of(leaf) == 3 { 5 } else { 3 };
    let notice = format!(r#"{{"keys":["k"],"slot":{other_slot}}}"#);
    assert_eq!(
        signed(middle, "POST", "/internal/evicted", notice.as_bytes()).status,
        409
    );
    // A join at a node that is not the root: 421.
    let join = format!(r#"{{"name":"NODE-{leaf}","address":"127.0.0.1:9"}}"#);
    assert_eq!(
        signed(middle, "POST", "/nodes/join", join.as_bytes()).status,
        421
    );
    assert_eq!(
        http::get(&format!("{}/store/k", cluster.url(leaf))).1["value"],
        json!("v1")
    );
}

#[test]
fn a_join_under_a_live_nodes_name_is_refused_and_the_intruder_gives_up() {
    let mut cluster = Cluster::builder(2)
        .arg("--zk-session-timeout")
        .arg("2s")
        .start();
    let tree = cluster.nodes_document();
    let port = treecache_harness::free_port();
    let log = cluster.dir.join("intruder.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut intruder = cluster
        .command(2, port)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut status = None;
    wait_until(Duration::from_secs(20), "the intruder gives up", || {
        status = intruder.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(1));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "gave up too soon"
    );
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("another ZooKeeper session"), "{said}");
    let mut now = cluster.nodes_document();
    for doc in [&mut now] {
        for node in doc["nodes"].as_array_mut().unwrap() {
            node.as_object_mut().unwrap().remove("live");
        }
    }
    let mut before = tree;
    for node in before["nodes"].as_array_mut().unwrap() {
        node.as_object_mut().unwrap().remove("live");
    }
    assert_eq!(now, before, "the intruder took NODE-2's place");
    assert_eq!(http::get(&cluster.url(2)).0, 200);
    cluster.kill(2);
}

#[test]
fn client_tokens_guard_the_data_and_nothing_else() {
    let cluster = Cluster::builder(2)
        .tokens("# test tokens\nreader-token read\nwriter-token write\n")
        .start();
    let leaf = cluster.at_slot(1);
    let url = cluster.url(leaf);
    let bearer = |t: &str| format!("Bearer {t}");
    let (r, w) = (bearer("reader-token"), bearer("writer-token"));
    let put = |auth: Option<&str>, via: &str| {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        http::request(
            "PUT",
            &format!("{via}/store/k"),
            Some(br#"{"value":1}"#),
            &headers,
        )
    };
    let get = |auth: Option<&str>, path: &str| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        http::request("GET", &format!("{url}{path}"), None, &headers)
    };

    let none = put(None, &url);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert_eq!(put(Some("Bearer nonsense"), &url).status, 401);
    assert_eq!(put(Some(&r), &url).status, 403);
    // A write forwarded to the root passes on the cluster key.
    let written = put(Some(&w), &url);
    assert_eq!(written.status, 200, "{}", written.text());
    assert_eq!(put(Some(&w), &cluster.url(1)).status, 200);

    assert_eq!(get(None, "/store/k").status, 401);
    assert_eq!(get(Some(&r), "/store/k").json()["value"], json!(1));
    assert_eq!(get(Some(&w), "/store/k").status, 200);
    let delete = |auth: &str| {
        http::request(
            "DELETE",
            &format!("{url}/store/k"),
            None,
            &[("Authorization", auth)],
        )
    };
    assert_eq!(delete(&r).status, 403);
    assert_eq!(delete(&w).status, 200);
    for path in ["/mget", "/keys", "/keys?prefix=a"] {
        assert_eq!(get(None, path).status, 401, "{path}");
    }
    for path in [
        "/",
        "/ready",
        "/metrics",
        "/openapi.yaml",
        "/docs",
        "/nodes",
    ] {
        assert_eq!(get(None, path).status, 200, "{path}");
    }
}

#[test]
fn bad_key_and_token_files_stop_the_node_with_status_2() {
    let dir = treecache_harness::temp_dir("bad-files");
    let short = dir.join("short.key");
    std::fs::write(&short, "x".repeat(31) + "\n").unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "good read\nbad admin\n").unwrap();
    let key = dir.join("good.key");
    std::fs::write(&key, "k".repeat(40)).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(treecache_harness::treecache_bin())
            .args(["node", "--id", "1", "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--cluster-key-file", short.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--cluster-key-file") && err.contains("32"),
        "{err}"
    );
    let (code, err) = run(&[
        "--cluster-key-file",
        key.to_str().unwrap(),
        "--api-tokens-file",
        tokens.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("{}:2", tokens.display())), "{err}");
    let (code, err) = run(&["--api-tokens-file", tokens.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_zk_auth_the_clusters_znodes_are_closed_to_other_clients() {
    let cluster = Cluster::builder(2)
        .arg("--zk-auth")
        .arg("treecache:zk-secret")
        .start();
    let leaf = cluster.at_slot(1);
    assert_eq!(
        http::put(&format!("{}/store/k", cluster.url(leaf)), &json!("v")).0,
        200
    );
    assert_eq!(
        http::get(&format!("{}/store/k", cluster.url(leaf))).1["value"],
        json!("v")
    );

    let zk = zookeeper::ZooKeeper::connect(
        &cluster.zk_addr,
        Duration::from_secs(5),
        |_: zookeeper::WatchedEvent| {},
    )
    .unwrap();
    let root = format!("{}/NODE-1", cluster.prefix);
    let live = format!("{}/live/NODE-{leaf}", cluster.prefix);
    let no_auth = Err(zookeeper::ZkError::NoAuth);
    assert_eq!(zk.get_data(&root, false).map(|_| ()), no_auth);
    assert_eq!(zk.get_children(&cluster.prefix, false).map(|_| ()), no_auth);
    assert_eq!(
        zk.set_data(&root, b"{}".to_vec(), None).map(|_| ()),
        no_auth
    );
    assert_eq!(zk.delete(&live, None), no_auth);
    assert_eq!(
        zk.create(
            &format!("{root}/NODE-9"),
            Vec::new(),
            zookeeper::Acl::open_unsafe().clone(),
            zookeeper::CreateMode::Persistent
        )
        .map(|_| ()),
        no_auth
    );
    assert_eq!(
        zk.set_acl(&root, zookeeper::Acl::open_unsafe().clone(), None)
            .map(|_| ()),
        no_auth
    );
    // The same client with the cluster's identity reads them.
    zk.add_auth("digest", b"treecache:zk-secret".to_vec())
        .unwrap();
    assert!(zk.get_data(&root, false).is_ok());
    let acl = zk.get_acl(&root).unwrap().0;
    assert_eq!(acl.len(), 1, "{acl:?}");
    assert_eq!(acl[0].scheme, "digest");
    assert!(acl[0].id.starts_with("treecache:"), "{acl:?}");
    // The tree is as it was.
    assert_eq!(cluster.tree()["nodes"].as_array().unwrap().len(), 3);
}

#[test]
fn a_key_file_open_to_group_or_others_is_warned_of_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = treecache_harness::temp_dir("key-modes");
    // `treecache keygen` writes a key its owner alone may read.
    let private = dir.join("private.key");
    let made = std::process::Command::new(treecache_harness::treecache_bin())
        .arg("keygen")
        .arg(&private)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "keygen wrote mode {mode:04o}");
    let open = dir.join("open.key");
    std::fs::copy(&private, &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();

    let warnings_of = |file: &std::path::Path| {
        let cluster = Cluster::builder(1)
            .no_key()
            .arg("--cluster-key-file")
            .arg(file.to_str().unwrap())
            .start();
        let log = cluster.log(1);
        // Start-up's warnings come before this line.
        assert!(log.contains("NODE-1 listening on"), "{log}");
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains("cluster key file"))
            .map(str::to_string)
            .collect();
        (lines, log)
    };
    let (lines, log) = warnings_of(&open);
    assert_eq!(lines.len(), 1, "{log}");
    let line = &lines[0];
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains(&open.display().to_string()), "{line}");
    assert!(line.contains("mode 0644"), "{line}");
    assert!(
        line.contains("its group may read, others may read (bits 044)"),
        "{line}"
    );
    let (lines, log) = warnings_of(&private);
    assert!(lines.is_empty(), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
