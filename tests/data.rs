//! Reading through, writing at the root, and refusing bad input.

use treecache_harness as common;

use common::http::{self, enc};
use common::Cluster;
use serde_json::{json, Value};

fn local(cluster: &Cluster, id: u32, key: &str) -> u16 {
    http::get(&format!(
        "{}/store/{}?local=true",
        cluster.url(id),
        enc(key)
    ))
    .0
}

#[test]
fn a_read_on_a_leaf_caches_on_the_path_only_and_writes_and_deletes_go_to_the_root() {
    let cluster = Cluster::start(3);
    let (root, parent, leaf) = (1, cluster.at_slot(1), cluster.at_slot(3));
    assert_eq!(
        http::put(&format!("{}/store/k", cluster.url(root)), &json!({"n": 1})),
        (200, json!({"key": "k", "value": {"n": 1}}))
    );
    for id in cluster.ids() {
        let expect = if id == root { 200 } else { 404 };
        assert_eq!(
            local(&cluster, id, "k"),
            expect,
            "NODE-{id} before the read"
        );
    }
    assert_eq!(
        http::get(&format!("{}/store/k", cluster.url(leaf))),
        (200, json!({"key": "k", "value": {"n": 1}}))
    );
    for id in cluster.ids() {
        let on_path = [root, parent, leaf].contains(&id);
        assert_eq!(
            local(&cluster, id, "k"),
            if on_path { 200 } else { 404 },
            "NODE-{id} after the read"
        );
    }

    // A write through a leaf lands at the root.
    let other_leaf = cluster.at_slot(6);
    assert_eq!(
        http::put(
            &format!("{}/store/w", cluster.url(other_leaf)),
            &json!("via leaf")
        )
        .0,
        200
    );
    assert_eq!(
        http::get(&format!("{}/store/w?local=true", cluster.url(root))).1["value"],
        "via leaf"
    );

    // A delete through a leaf; then 404 everywhere, and a second delete is 404.
    assert_eq!(
        http::delete(&format!("{}/store/k", cluster.url(other_leaf))),
        (200, json!({"key": "k"}))
    );
    for id in cluster.ids() {
        assert_eq!(
            http::get(&format!("{}/store/k", cluster.url(id))).0,
            404,
            "NODE-{id}"
        );
    }
    let (status, body) = http::delete(&format!("{}/store/k", cluster.url(leaf)));
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

#[test]
fn keys_of_any_utf8_and_values_of_any_json_round_trip() {
    let cluster = Cluster::start(2);
    let keys = [
        "plain".to_string(),
        "žluťoučký kůň".to_string(),
        "a b?c#d&e=f%g+h".to_string(),
        "日本語🙂".to_string(),
        "é".repeat(250),
    ];
    let values = [
        json!(null),
        json!(true),
        json!(-5),
        json!(1.5),
        json!("s"),
        json!([1, "a"]),
        json!({"x": {"y": null}}),
    ];
    for (i, key) in keys.iter().enumerate() {
        let value = &values[i % values.len()];
        let (status, body) = http::put(&format!("{}/store/{}", cluster.url(2), enc(key)), value);
        assert_eq!(status, 200, "{key}: {body}");
        assert_eq!(body, json!({"key": key, "value": value}));
        for id in [3, 1] {
            let (status, body) = http::get(&format!("{}/store/{}", cluster.url(id), enc(key)));
            assert_eq!(
                (status, body),
                (200, json!({"key": key, "value": value})),
                "{key} on NODE-{id}"
            );
        }
    }
}

fn assert_error(answer: &http::Answer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.text());
    let body: Value = answer.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: no JSON error in {}",
        answer.text()
    );
    assert!(
        answer
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_every_node_survives_it() {
    // Without a cluster key: the joins below are judged on their bodies.
    let cluster = Cluster::builder(2).no_key().start();
    let big = format!("{{\"value\":\"{}\"}}", "a".repeat(1 << 20));
    let huge = vec![b' '; (1 << 20) + 2048];
    for id in [1, 2] {
        let base = cluster.url(id);
        let req = |m: &str, path: &str, body: Option<&[u8]>| {
            http::request(m, &format!("{base}{path}"), body, &[])
        };
        assert_error(
            &req("GET", &format!("/store/{}", "k".repeat(251)), None),
            400,
            "251-character key",
        );
        assert_error(&req("GET", "/store/a%2Fb", None), 400, "encoded slash");
        assert_error(&req("GET", "/store/a/b", None), 404, "slash in the path");
        assert_error(&req("GET", "/store/%zz", None), 400, "malformed escape");
        assert_error(&req("GET", "/store/%FF", None), 400, "not UTF-8");
        assert_error(&req("GET", "/store/", None), 400, "empty key");
        assert_error(
            &req("GET", "/store/k?local=maybe", None),
            400,
            "local=maybe",
        );
        assert_error(&req("PUT", "/store/k", None), 400, "no body");
        assert_error(
            &req("PUT", "/store/k", Some(b"{not json")),
            400,
            "invalid JSON",
        );
        assert_error(
            &req("PUT", "/store/k", Some(b"{\"val\": 1}")),
            400,
            "no value field",
        );
        assert_error(&req("PUT", "/store/k", Some(b"[1]")), 400, "not an object");
        assert_error(
            &req("PUT", "/store/k", Some(big.as_bytes())),
            413,
            "value over 1 MiB",
        );
        assert_error(
            &req("PUT", "/store/k", Some(&huge)),
            413,
            "body over 1 MiB + 1 KiB",
        );
        let wrong = req("POST", "/store/k", Some(b"{}"));
        assert_error(&wrong, 405, "POST on a key");
        assert_eq!(wrong.header("allow"), Some("GET, PUT, DELETE"));
        let wrong = req("PATCH", "/", None);
        assert_error(&wrong, 405, "PATCH /");
        assert_eq!(wrong.header("allow"), Some("GET"));
        assert_error(&req("GET", "/nowhere", None), 404, "unknown path");
        assert_error(
            &req(
                "POST",
                "/nodes/join",
                Some(b"{\"name\":\"NODE-9\",\"address\":\"h:1\"}"),
            ),
            if id == 1 { 400 } else { 421 },
            "join outside the tree",
        );
        assert_error(
            &req(
                "POST",
                "/nodes/join",
                Some(b"{\"name\":\"bob\",\"address\":\"h:1\"}"),
            ),
            if id == 1 { 400 } else { 421 },
            "join with a bad name",
        );
        // A second name for an existing id, on a full tree: refused, and the
        // root's table stays usable.
        assert_error(
            &req(
                "POST",
                "/nodes/join",
                Some(b"{\"name\":\"NODE-02\",\"address\":\"h:1\"}"),
            ),
            if id == 1 { 400 } else { 421 },
            "join as NODE-02",
        );
        assert_eq!(
            req("GET", "/nodes", None).status,
            200,
            "/nodes after the bad joins"
        );
        assert_eq!(req("GET", "/", None).status, 200, "NODE-{id} survived");
    }
    // The node still serves data after all that.
    assert_eq!(
        http::put(&format!("{}/store/ok", cluster.url(3)), &json!(1)).0,
        200
    );
    assert_eq!(http::get(&format!("{}/store/ok", cluster.url(2))).0, 200);
}

#[test]
fn a_full_root_answers_507() {
    let cluster = Cluster::builder(2)
        .arg("--max-store-bytes")
        .arg("4096")
        .start();
    let value = json!("x".repeat(1000));
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(http::put(&format!("{}/store/k{i}", cluster.url(2)), &value).0);
    }
    assert!(statuses.starts_with(&[200, 200, 200]), "{statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 507, "{statuses:?}");
    // Replacing a stored value by a smaller one still works; deleting frees room.
    assert_eq!(
        http::put(&format!("{}/store/k0", cluster.url(1)), &json!(1)).0,
        200
    );
    assert_eq!(http::delete(&format!("{}/store/k1", cluster.url(1))).0, 200);
    assert_eq!(
        http::put(&format!("{}/store/new", cluster.url(1)), &value).0,
        200
    );
}
