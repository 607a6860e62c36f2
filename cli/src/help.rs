//! The help texts: one for the tool, one per command, and the one-line
//! synopsis shown with a usage error.

use crate::command_name::CommandName;

/// `treecache-cli --help`
pub const GENERAL: &str = r#"treecache-cli - talk to the nodes of a treecache cluster

Usage:
  treecache-cli [OPTIONS] get NODE KEY
  treecache-cli [OPTIONS] put NODE KEY VALUE
  treecache-cli [OPTIONS] delete NODE KEY
  treecache-cli [OPTIONS] mget NODE KEY...
  treecache-cli [OPTIONS] keys NODE
  treecache-cli [OPTIONS] health NODE
  treecache-cli [OPTIONS] ready NODE
  treecache-cli [OPTIONS] metrics NODE
  treecache-cli [OPTIONS] tree [NODE]
  treecache-cli completions bash
  treecache-cli help [COMMAND]

Commands:
  get          read a key; a cache node fetches it from its parent on a miss
  put          write a key; a cache node forwards the write to the root
  delete       delete a key; forwarded to the root like put
  mget         read several keys in one request (POST /mget)
  keys         list keys, page after page (GET /keys)
  health       ask a node whether it is alive, and what it is (GET /)
  ready        ask a node whether it serves its part of the tree (GET /ready)
  metrics      print a node's Prometheus metrics (GET /metrics)
  tree         draw the tree as the root knows it (GET /nodes); without NODE asks node 1
  completions  print a completion script for bash

NODE is one of:
  NODE-3, node-3, 3   a node id. Host mode (the default): http://localhost:{BASE + id},
                      BASE 5000 unless --base-port or TREECACHE_BASE_PORT says otherwise.
                      Docker mode: http://NODE-{id}:5000
  HOST:PORT           for example 127.0.0.1:5003
  URL                 for example http://10.0.1.67:5000 or https://node-1.example:5000
  self                docker mode: the node of this container, http://127.0.0.1:API_PORT
                      (API_PORT 5000 unless set), as the image's health check uses it
  With --cacert, every form but a URL is reached over https:// instead.

KEY is any text (spaces, ?, #, % and non-ASCII included); it is percent-encoded
into the URL. A key cannot contain '/': the node answers 400.

VALUE is sent as JSON when it parses as JSON (42, -5, true, null, "42", {"a":1},
[1,2]), otherwise as a string (hello). Quote it for the shell: '{"a": 1}'.
A VALUE of - is read from standard input (one final line break dropped), then
taken the same way; the string "-" itself is '"-"'.

Options:
  --status           print the HTTP status before the answer: 200 {"key": "k", "value": 1}
  --json             tree: print the raw /nodes document instead of a drawing
  --docker           docker mode (also TREECACHE_MODE=docker; TREECACHE_MODE=host is the default)
  --base-port PORT   host mode: node id i is on localhost:PORT+i (also TREECACHE_BASE_PORT)
  --timeout TIME     give up on a request after this long: seconds (2, 0.5) or with a unit
                     (500ms, 2s, 1m); default 10, of which connecting at most 3
  --token TOKEN      send Authorization: Bearer TOKEN, for nodes started with
                     --api-tokens-file (also TREECACHE_TOKEN)
  --cacert PATH      nodes serve HTTPS: trust the CA certificates of this PEM file
                     (and no others), and reach NODE over https:// (also TREECACHE_CACERT)
  --etag             get, put, delete: print the version of the answer's ETag before it
                     (- when it has none): 7 {"key": "k", "value": 1}
  --ttl SECONDS      put: the value expires after this long (90, 2m)
  --if-match N       put, delete: only if the key's version is N (If-Match: "N"); else 412
  --if-absent        put: only if the key does not exist (If-None-Match: *); else 412
  --prefix P         keys: only keys that start with P
  --after K          keys: only keys after K (where an earlier listing's "next" left off)
  --limit N          keys: at most N keys
  -h, --help         this help; with a command, that command's help
  -V, --version      print the version
  --                 end of options: what follows is NODE, KEY or VALUE even if it starts with -

Options may stand anywhere before '--'. A VALUE that is a negative number (-5)
needs no '--'.

Output:
  The node's JSON answer goes to stdout as one line, error answers included
  ({"error": "..."}). When a node cannot be reached, one line on stderr names the URL.

Exit status:
  0  success
  1  not found (404); mget: one of the keys is missing
  2  usage error: unknown command, missing or extra argument, bad option
  3  the node could not be reached or did not answer in time, or it answered
     with another error status (400, 412, 413, 502, 503, 504, 507, ...);
     ready: the node is not ready (503)

Examples, against `treecache cluster` (NODE-1 on localhost:5001):
  treecache-cli put 1 greeting hello
  treecache-cli get NODE-4 greeting
  treecache-cli --status get 127.0.0.1:5002 greeting
  treecache-cli put node-1 config '{"retries": 3}'
  treecache-cli delete http://localhost:5001 greeting
  treecache-cli health 3
  treecache-cli ready 3 && echo serving
  treecache-cli metrics 2 | grep hits
  treecache-cli mget 5 greeting config
  treecache-cli keys 1 --prefix user:
  echo '{"big": "document"}' | treecache-cli put 1 doc -
  treecache-cli tree
  treecache-cli --docker get NODE-2 greeting       (inside the containers' network)
  source <(treecache-cli completions bash)

More: treecache-cli help COMMAND
"#;

const GET: &str = r#"treecache-cli get - read a key

Usage: treecache-cli [OPTIONS] get NODE KEY

Sends GET /store/KEY to NODE. A node answers from its own copy when it holds
one; otherwise it asks its parent, and so on up to the root, and every node on
the way back keeps a copy.

Prints {"key": KEY, "value": VALUE}.
Exit status: 0 found, 1 the key exists nowhere (404), 3 unreachable or another error.

Options: --status, --timeout TIME, --token TOKEN, --docker, --base-port PORT
(see treecache-cli --help).

Examples:
  treecache-cli get 1 greeting
  treecache-cli get NODE-4 greeting
  treecache-cli --status get localhost:5002 greeting
      200 {"key": "greeting", "value": "hello"}
  treecache-cli get 1 'a key with spaces?'
  treecache-cli get 1 -- -starts-with-a-dash
"#;

const PUT: &str = r#"treecache-cli put - write a key

Usage: treecache-cli [OPTIONS] put NODE KEY VALUE

Sends PUT /store/KEY with {"value": VALUE} to NODE. The root stores the value;
any other node forwards the write to the root and relays its answer. The write
is acknowledged once every cached copy of the key has been invalidated.

VALUE is sent as JSON when it parses as JSON, otherwise as a string:
  42 -> 42          true -> true        null -> null     -5 -> -5
  '{"a":1}' -> {"a":1}                  '"42"' -> "42" (a string)
  hello -> "hello"  'hello world' -> "hello world"

A VALUE of - is read from standard input (without its final line break) and
taken the same way: echo '{"a": 1}' | treecache-cli put 1 k -

--ttl SECONDS sends {"value": VALUE, "ttl": SECONDS}: the value expires after
that many seconds (90, or with a unit: 2m). --if-match N sends If-Match: "N":
the write happens only if the key's version (its ETag, shown by --etag) is
still N. --if-absent sends If-None-Match: *: only if the key does not exist.
Either condition failing is 412 Precondition Failed.

Prints {"key": KEY, "value": VALUE}.
Exit status: 0 stored, 3 unreachable or refused (400 bad key, 412 condition
failed, 413 too large, 507 store full, 502/504 the root could not be reached, ...).

Options: --ttl SECONDS, --if-match N, --if-absent, --etag, --status,
--timeout TIME, --token TOKEN, --docker, --base-port PORT (see treecache-cli
--help).

Examples:
  treecache-cli put 1 greeting hello
  treecache-cli put NODE-2 answer 42
  treecache-cli put localhost:5001 config '{"retries": 3, "verbose": false}'
  treecache-cli put 1 'my key' 'a string with spaces'
  treecache-cli put 1 delta -5
  treecache-cli put 1 flag -- --verbose
  treecache-cli put 1 session token --ttl 600
  treecache-cli put 1 counter 8 --if-match 7
  treecache-cli put 1 lock mine --if-absent
  treecache-cli put 1 doc - < doc.json
"#;

const DELETE: &str = r#"treecache-cli delete - delete a key

Usage: treecache-cli [OPTIONS] delete NODE KEY

Sends DELETE /store/KEY to NODE; any node forwards it to the root. The delete
is acknowledged once every cached copy of the key has been invalidated.

--if-match N sends If-Match: "N": the key is deleted only if its version is
still N (else 412).

Prints {"key": KEY}.
Exit status: 0 deleted, 1 the key did not exist (404), 3 unreachable or another
error (412 the version did not match, ...).

Options: --if-match N, --etag, --status, --timeout TIME, --token TOKEN,
--docker, --base-port PORT (see treecache-cli --help).

Examples:
  treecache-cli delete 1 greeting
  treecache-cli --status delete NODE-3 greeting
      200 {"key": "greeting"}
  treecache-cli delete 1 counter --if-match 8
"#;

const MGET: &str = r#"treecache-cli mget - read several keys at once

Usage: treecache-cli [OPTIONS] mget NODE KEY...

Sends POST /mget with {"keys": [KEY, ...]} to NODE, which answers each key as
a get would (from its copy, else through its parent).

Prints {"missing": [KEY, ...], "values": {KEY: VALUE, ...}}.
Exit status: 0 every key was found, 1 some are missing (the answer is printed
all the same), 3 unreachable or another error.

Options: --status, --timeout TIME, --docker, --base-port PORT
(see treecache-cli --help).

Examples:
  treecache-cli mget 4 greeting config
  treecache-cli mget NODE-2 -- -dashed-key other
"#;

const KEYS: &str = r#"treecache-cli keys - list keys

Usage: treecache-cli [OPTIONS] keys NODE

Sends GET /keys?prefix=P&after=K&limit=N to NODE and follows the node's pages
(each starting after the "next" of the one before) until it says there are no
more, or until --limit keys have come. Prefix and after are percent-encoded.

Prints {"keys": [KEY, ...], "next": K or null}, all pages in one line; next is
where a listing cut short by --limit goes on (--after K).
Exit status: 0 listed (even none), 3 unreachable or another error.

Options: --prefix P, --after K, --limit N, --status, --timeout TIME, --docker,
--base-port PORT (see treecache-cli --help).

Examples:
  treecache-cli keys 1
  treecache-cli keys 1 --prefix user: --limit 100
  treecache-cli keys 1 --prefix user: --after user:0042
"#;

const READY: &str = r#"treecache-cli ready - does a node serve?

Usage: treecache-cli [OPTIONS] ready NODE

Sends GET /ready to NODE. A node is ready once it has joined the tree (the
root: once it has loaded its data and the tree) and may answer from its cache.

Prints {"ready": true}, or {"ready": false, "reason": "..."}.
Exit status: 0 ready, 3 not ready (503) or unreachable.

The container image's health check is this command against its own node:
  /treecache-cli --timeout 2 ready self

Options: --status, --timeout TIME, --docker, --base-port PORT
(see treecache-cli --help).

Examples:
  treecache-cli ready 3
  until treecache-cli ready 1; do sleep 1; done
  docker exec NODE-2 /treecache-cli ready self
"#;

const METRICS: &str = r#"treecache-cli metrics - a node's metrics

Usage: treecache-cli [OPTIONS] metrics NODE

Sends GET /metrics to NODE and prints its Prometheus text as it came: hits and
misses, fills, invalidations, evictions, cache bytes and bound, request
latency by route, ZooKeeper connection, build version, and on the root its log.

Exit status: 0 printed, 3 unreachable or another error.

Options: --status, --timeout TIME, --docker, --base-port PORT
(see treecache-cli --help).

Examples:
  treecache-cli metrics 1
  treecache-cli metrics NODE-4 | grep '^treecache_cache_'
"#;

const COMPLETIONS: &str = r#"treecache-cli completions - shell completion

Usage: treecache-cli completions SHELL

Prints a completion script for SHELL; bash is the one there is. It completes
commands, options, and node ids 1 to 7 as a start.

Exit status: 0 printed, 2 another shell.

Examples:
  source <(treecache-cli completions bash)
  treecache-cli completions bash > ~/.local/share/bash-completion/completions/treecache-cli
"#;

const HEALTH: &str = r#"treecache-cli health - is a node alive?

Usage: treecache-cli [OPTIONS] health NODE

Sends GET / to NODE and prints its answer, for example
  {"address": "127.0.0.1", "node": "NODE-1", "role": "root", "status": "alive", ...}

Exit status: 0 the node answered, 3 it could not be reached or answered with an error.

Options: --status, --timeout TIME, --token TOKEN, --docker, --base-port PORT
(see treecache-cli --help).

Examples:
  treecache-cli health 1
  treecache-cli --timeout 1 health 127.0.0.1:5003
  treecache-cli --docker health NODE-2
"#;

const TREE: &str = r#"treecache-cli tree - draw the tree

Usage: treecache-cli [OPTIONS] tree [NODE]

Sends GET /nodes to NODE (node 1 when none is given; any node answers it by
asking the root) and draws the tree: each node with its address and slot,
children indented under their parent, free slots marked.

  tree of depth 2: 3 of 3 slots taken, root NODE-1
  NODE-1      127.0.0.1:5001  slot 0
  ├── NODE-2  127.0.0.1:5002  slot 1
  └── NODE-3  127.0.0.1:5003  slot 2

The root group follows when the root has standbys; with several root shards
(--root-shards above 1), each shard too: its slot ranges, its primary and
the members of its root group.

With --json prints the /nodes document itself:
  {"capacity": 3, "depth": 2, "nodes": [...], "root": "NODE-1"}
With --status the HTTP status comes first (on its own line above a drawing).

Exit status: 0 the tree was shown, 3 unreachable or another error.

Options: --json, --status, --timeout TIME, --docker, --base-port PORT
(see treecache-cli --help).

Examples:
  treecache-cli tree
  treecache-cli tree NODE-3
  treecache-cli --base-port 7000 tree
  treecache-cli tree --json
"#;

/// `treecache-cli help COMMAND`, `treecache-cli COMMAND --help`
pub fn for_command(name: CommandName) -> &'static str {
    match name {
        CommandName::Get => GET,
        CommandName::Put => PUT,
        CommandName::Delete => DELETE,
        CommandName::Mget => MGET,
        CommandName::Keys => KEYS,
        CommandName::Health => HEALTH,
        CommandName::Ready => READY,
        CommandName::Metrics => METRICS,
        CommandName::Tree => TREE,
        CommandName::Completions => COMPLETIONS,
    }
}

/// The `Usage:` line of a command, or of the tool when `name` is `None`.
pub fn synopsis(name: Option<CommandName>) -> &'static str {
    let text = name.map_or(GENERAL, for_command);
    text.lines()
        .find(|line| line.starts_with("Usage:"))
        .filter(|line| line.len() > "Usage:".len())
        .unwrap_or("Usage: treecache-cli [OPTIONS] COMMAND [ARGS...]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_help_shows_its_usage_and_examples() {
        for name in CommandName::ALL {
            let text = for_command(name);
            let usage = match name {
                CommandName::Completions => "treecache-cli completions ".to_string(),
                _ => format!("treecache-cli [OPTIONS] {} ", name.word()),
            };
            assert!(synopsis(Some(name)).contains(&usage), "{}", name.word());
            assert!(text.contains("Examples:"), "{}", name.word());
            assert!(text.contains("Exit status:"), "{}", name.word());
            assert!(
                GENERAL.contains(&usage),
                "{} missing from the tool's help",
                name.word()
            );
        }
    }

    #[test]
    fn the_tool_synopsis_names_the_command() {
        assert_eq!(
            synopsis(None),
            "Usage: treecache-cli [OPTIONS] COMMAND [ARGS...]"
        );
    }
}
