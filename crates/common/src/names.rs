//! Node names: node `id` is called `NODE-{id}`.
//!
//! Parsing is strict, so that each node has exactly one name: `NODE-`
//! followed by the id in decimal, without a sign or leading zeros
//! (`NODE-02` would be a second name for node 2). Whether the id lies inside
//! a tree is for the caller to check.

/// What every node name starts with.
pub const PREFIX: &str = "NODE-";

/// `NODE-{id}`.
pub fn node_name(id: u32) -> String {
    format!("{PREFIX}{id}")
}

/// The id in a node name, when `name` is exactly `NODE-{id}`.
pub fn parse_node_name(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX).and_then(parse_node_id)
}

/// An id written as [`node_name`] writes it: decimal digits only, no leading
/// zero (but `0` itself), at most `u32::MAX`.
pub fn parse_node_id(digits: &str) -> Option<u32> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_formatted_and_parsed_back() {
        assert_eq!(node_name(4), "NODE-4");
        for id in [0, 1, 9, 10, 1023, u32::MAX] {
            assert_eq!(parse_node_name(&node_name(id)), Some(id), "{id}");
        }
    }

    #[test]
    fn only_the_one_name_of_a_node_parses() {
        for name in [
            "",
            "NODE-",
            "NODE-x",
            "NODE-02",
            "NODE-00",
            "NODE-+2",
            "NODE--2",
            "NODE- 2",
            "NODE-2 ",
            "node-2",
            "Node-2",
            "2",
            "NODE2",
            "NODE-2a",
            "NODE-4294967296",
            "NODE-٣",
        ] {
            assert_eq!(parse_node_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn ids_have_no_leading_zeros() {
        assert_eq!(parse_node_id("7"), Some(7));
        assert_eq!(parse_node_id("0"), Some(0));
        assert_eq!(parse_node_id("07"), None);
        assert_eq!(parse_node_id("+7"), None);
        assert_eq!(parse_node_id(""), None);
        assert_eq!(parse_node_id("99999999999"), None);
    }
}
