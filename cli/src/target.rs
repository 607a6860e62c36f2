//! Which node a command talks to: the NODE argument and the addressing mode
//! turned into a base URL. Pure functions, no I/O.

use std::fmt;

use treecache_common::names;

/// Port of the API inside a container (the node's default `API_PORT`).
const CONTAINER_API_PORT: u16 = 5000;

/// Base port of `treecache cluster` on this machine: node `i` is on `base + i`.
pub const DEFAULT_BASE_PORT: u16 = 5000;

/// How a bare node id is turned into an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nodes run on this machine: id `i` is `http://localhost:{base_port + i}`.
    Host { base_port: u16 },
    /// Nodes are containers on a Docker network: id `i` is `http://NODE-{i}:5000`.
    Docker,
}

/// The mode settings as given on the command line and in the environment.
/// A flag wins over its environment variable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModeSettings {
    /// `--docker`
    pub docker_flag: bool,
    /// `--base-port`
    pub base_port_flag: Option<u16>,
    /// `TREECACHE_MODE`
    pub mode_env: Option<String>,
    /// `TREECACHE_BASE_PORT`
    pub base_port_env: Option<String>,
}

/// A NODE argument or a mode setting that cannot be used; the message is one sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetError(pub String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Mode {
    /// Picks the mode: `--docker`, else `TREECACHE_MODE` (`host` or `docker`), else host
    /// mode with the base port from `--base-port`, else `TREECACHE_BASE_PORT`, else 5000.
    pub fn choose(settings: &ModeSettings) -> Result<Mode, TargetError> {
        let docker = settings.docker_flag
            || match settings.mode_env.as_deref().map(str::trim) {
                None | Some("") => false,
                Some(mode) if mode.eq_ignore_ascii_case("host") => false,
                Some(mode) if mode.eq_ignore_ascii_case("docker") => true,
                Some(other) => {
                    return Err(TargetError(format!(
                        "TREECACHE_MODE must be 'host' or 'docker', not '{other}'"
                    )))
                }
            };
        // The environment's base port is checked even in docker mode, so that a typo
        // in it is reported the first time, not later when the mode changes.
        let base_port_env = match settings.base_port_env.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse::<u16>().map_err(|_| {
                TargetError(format!(
                    "TREECACHE_BASE_PORT must be a port number (0-65535), not '{text}'"
                ))
            })?),
        };
        if docker {
            return Ok(Mode::Docker);
        }
        let base_port = settings
            .base_port_flag
            .or(base_port_env)
            .unwrap_or(DEFAULT_BASE_PORT);
        Ok(Mode::Host { base_port })
    }
}

/// Turns a NODE argument into the base URL of that node, without a trailing slash.
///
/// Accepted forms: `NODE-3`, `node-3` and `3` (a node id, placed by `mode`),
/// `host:port`, and an `http://` URL (used as given).
pub fn resolve(node: &str, mode: Mode) -> Result<String, TargetError> {
    let node = node.trim();
    if let Some(scheme_end) = node.find("://") {
        return resolve_url(node, &node[..scheme_end]);
    }
    if let Some((host, port)) = node.rsplit_once(':') {
        let port_ok = matches!(port.parse::<u16>(), Ok(p) if p > 0);
        if host.is_empty() || !port_ok {
            return Err(TargetError(format!(
                "'{node}' is not a valid HOST:PORT (the port must be 1-65535)"
            )));
        }
        return Ok(format!("http://{host}:{port}"));
    }
    if let Some(id) = node_id(node)? {
        return address_of_id(id, mode);
    }
    Err(TargetError(format!(
        "'{node}' is not a node: use NODE-ID, ID, HOST:PORT or http://HOST:PORT"
    )))
}

/// The id in `NODE-3`, `node-3` or `3`; `None` when `node` has neither form.
fn node_id(node: &str) -> Result<Option<u32>, TargetError> {
    let has_prefix = node
        .get(..5)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("node-"));
    let digits = if has_prefix { &node[5..] } else { node };
    let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if !all_digits {
        return if has_prefix {
            Err(TargetError(format!(
                "'{node}' is not a node name: expected NODE-<id>, e.g. NODE-3"
            )))
        } else {
            Ok(None)
        };
    }
    // The node's own rule for the digits of a name: no leading zeros.
    match names::parse_node_id(digits) {
        Some(id) if id >= 1 => Ok(Some(id)),
        _ => Err(TargetError(format!(
            "'{node}' is not a node id: ids are whole numbers from 1, without leading zeros"
        ))),
    }
}

fn address_of_id(id: u32, mode: Mode) -> Result<String, TargetError> {
    match mode {
        Mode::Docker => Ok(format!(
            "http://{}:{CONTAINER_API_PORT}",
            names::node_name(id)
        )),
        Mode::Host { base_port } => {
            let port = u32::from(base_port) + id;
            if port > u32::from(u16::MAX) {
                return Err(TargetError(format!(
                    "node {id} with base port {base_port} gives port {port}, above 65535"
                )));
            }
            Ok(format!("http://localhost:{port}"))
        }
    }
}

/// The NODE `self`: the node of the container the CLI runs in, for the
/// image's health check. Docker mode only: `http://127.0.0.1:{API_PORT}`,
/// with the container's `API_PORT` (5000 when unset), as the node reads it.
pub const SELF: &str = "self";

/// The base URL of `self` in `mode`, given the environment's `API_PORT`.
pub fn resolve_self(mode: Mode, api_port_env: Option<&str>) -> Result<String, TargetError> {
    if mode != Mode::Docker {
        return Err(TargetError(
            "'self' names the node of this container: it needs docker mode \
             (--docker or TREECACHE_MODE=docker, as in the image)"
                .to_string(),
        ));
    }
    let port = match api_port_env.map(str::trim) {
        None | Some("") => CONTAINER_API_PORT,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(TargetError(format!(
                    "API_PORT must be a port number (1-65535), not '{text}'"
                )))
            }
        },
    };
    Ok(format!("http://127.0.0.1:{port}"))
}

fn resolve_url(node: &str, scheme: &str) -> Result<String, TargetError> {
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(TargetError(format!(
            "'{node}': only http:// URLs are supported (treecache nodes speak plain HTTP)"
        )));
    }
    let rest = &node[scheme.len() + 3..];
    if rest.is_empty() || rest.starts_with('/') {
        return Err(TargetError(format!("'{node}' has no host")));
    }
    if rest.contains(['?', '#']) {
        return Err(TargetError(format!(
            "'{node}': a node URL cannot have a query or fragment"
        )));
    }
    Ok(format!("http://{}", rest.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Mode = Mode::Host { base_port: 5000 };

    fn settings(
        docker: bool,
        flag: Option<u16>,
        mode: Option<&str>,
        port: Option<&str>,
    ) -> ModeSettings {
        ModeSettings {
            docker_flag: docker,
            base_port_flag: flag,
            mode_env: mode.map(String::from),
            base_port_env: port.map(String::from),
        }
    }

    #[test]
    fn node_ids_in_host_mode_are_ports_above_the_base() {
        assert_eq!(resolve("NODE-3", HOST).unwrap(), "http://localhost:5003");
        assert_eq!(resolve("node-3", HOST).unwrap(), "http://localhost:5003");
        assert_eq!(resolve("Node-12", HOST).unwrap(), "http://localhost:5012");
        assert_eq!(resolve("3", HOST).unwrap(), "http://localhost:5003");
        let base_7000 = Mode::Host { base_port: 7000 };
        assert_eq!(resolve("1", base_7000).unwrap(), "http://localhost:7001");
        assert_eq!(
            resolve("NODE-7", base_7000).unwrap(),
            "http://localhost:7007"
        );
    }

    #[test]
    fn node_ids_in_docker_mode_are_container_names() {
        assert_eq!(
            resolve("NODE-3", Mode::Docker).unwrap(),
            "http://NODE-3:5000"
        );
        assert_eq!(
            resolve("node-3", Mode::Docker).unwrap(),
            "http://NODE-3:5000"
        );
        assert_eq!(resolve("3", Mode::Docker).unwrap(), "http://NODE-3:5000");
    }

    #[test]
    fn addresses_and_urls_are_used_as_given_in_both_modes() {
        for mode in [HOST, Mode::Docker] {
            assert_eq!(
                resolve("127.0.0.1:7003", mode).unwrap(),
                "http://127.0.0.1:7003"
            );
            assert_eq!(resolve("NODE-2:5000", mode).unwrap(), "http://NODE-2:5000");
            assert_eq!(resolve("[::1]:5001", mode).unwrap(), "http://[::1]:5001");
            assert_eq!(
                resolve("http://10.0.1.67:5000", mode).unwrap(),
                "http://10.0.1.67:5000"
            );
            assert_eq!(
                resolve("http://localhost:5001/", mode).unwrap(),
                "http://localhost:5001"
            );
            assert_eq!(resolve("HTTP://node-1", mode).unwrap(), "http://node-1");
        }
    }

    #[test]
    fn unusable_nodes_are_refused_with_a_reason() {
        let refused = [
            ("0", "ids are whole numbers from 1"),
            ("NODE-0", "ids are whole numbers from 1"),
            ("NODE-x", "NODE-<id>"),
            ("NODE-", "NODE-<id>"),
            ("localhost", "is not a node"),
            ("nöde-3", "is not a node"),
            ("", "is not a node"),
            ("host:0", "HOST:PORT"),
            ("host:99999", "HOST:PORT"),
            (":5001", "HOST:PORT"),
            ("https://example.org", "only http://"),
            ("ftp://example.org", "only http://"),
            ("http://", "no host"),
            ("http://h:1/?a=b", "query"),
            ("99999999999", "ids are whole numbers from 1"),
            ("NODE-03", "without leading zeros"),
            ("03", "without leading zeros"),
        ];
        for (node, reason) in refused {
            let error = resolve(node, HOST).expect_err(node).0;
            assert!(error.contains(reason), "{node}: {error}");
        }
    }

    #[test]
    fn a_port_beyond_65535_is_refused() {
        let error = resolve("600", Mode::Host { base_port: 65000 }).unwrap_err();
        assert!(error.0.contains("above 65535"), "{error}");
        assert!(resolve("600", Mode::Docker).is_ok());
    }

    #[test]
    fn self_is_this_containers_node_in_docker_mode() {
        assert_eq!(
            resolve_self(Mode::Docker, None).unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            resolve_self(Mode::Docker, Some("6000")).unwrap(),
            "http://127.0.0.1:6000"
        );
        assert!(resolve_self(Mode::Docker, Some("x"))
            .unwrap_err()
            .0
            .contains("API_PORT"));
        assert!(resolve_self(HOST, None)
            .unwrap_err()
            .0
            .contains("docker mode"));
    }

    #[test]
    fn mode_defaults_to_host_on_port_5000() {
        assert_eq!(Mode::choose(&ModeSettings::default()).unwrap(), HOST);
    }

    #[test]
    fn docker_mode_comes_from_the_flag_or_the_environment() {
        assert_eq!(
            Mode::choose(&settings(true, None, None, None)).unwrap(),
            Mode::Docker
        );
        assert_eq!(
            Mode::choose(&settings(false, None, Some("docker"), None)).unwrap(),
            Mode::Docker
        );
        assert_eq!(
            Mode::choose(&settings(false, None, Some("DOCKER"), Some("7000"))).unwrap(),
            Mode::Docker
        );
        assert_eq!(
            Mode::choose(&settings(false, None, Some("host"), None)).unwrap(),
            HOST
        );
        assert_eq!(
            Mode::choose(&settings(true, None, Some("host"), None)).unwrap(),
            Mode::Docker
        );
    }

    #[test]
    fn the_base_port_flag_wins_over_the_environment() {
        let env_only = settings(false, None, None, Some("7000"));
        assert_eq!(
            Mode::choose(&env_only).unwrap(),
            Mode::Host { base_port: 7000 }
        );
        let both = settings(false, Some(8000), None, Some("7000"));
        assert_eq!(Mode::choose(&both).unwrap(), Mode::Host { base_port: 8000 });
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let error = Mode::choose(&settings(false, None, Some("k8s"), None)).unwrap_err();
        assert!(error.0.contains("TREECACHE_MODE"), "{error}");
        let error = Mode::choose(&settings(false, None, None, Some("high"))).unwrap_err();
        assert!(error.0.contains("TREECACHE_BASE_PORT"), "{error}");
    }
}
