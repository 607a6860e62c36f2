//! What goes to stdout: a node's answer as one line of JSON, optionally
//! behind its HTTP status and its ETag's version.

use serde_json::Value;

/// One line of JSON with a space after each `:` and `,`, as in
/// `{"key": "hello", "value": "world"}`. Non-ASCII text is printed as is.
pub fn json_line(value: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, value);
    out
}

fn write_json(out: &mut String, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (at, item) in items.iter().enumerate() {
                if at > 0 {
                    out.push_str(", ");
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (at, (name, member)) in members.iter().enumerate() {
                if at > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::from(name.as_str()).to_string());
                out.push_str(": ");
                write_json(out, member);
            }
            out.push('}');
        }
        // Scalars print as compact JSON already, strings with their escapes.
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A response body for printing: JSON is reformatted by [`json_line`], anything
/// else is shown as received, without trailing blank lines.
pub fn body_text(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(value) => json_line(&value),
        Err(_) => body.trim_end().to_string(),
    }
}

/// Puts `prefix` (the status of `--status`, the version of `--etag`) in
/// front of `text`: on the same line for one line of text, on a line of its
/// own above a multi-line drawing or text.
pub fn with_prefix(prefix: Option<&str>, text: &str) -> String {
    match prefix {
        None => text.to_string(),
        Some(prefix) if text.is_empty() => prefix.to_string(),
        Some(prefix) if text.contains('\n') => format!("{prefix}\n{text}"),
        Some(prefix) => format!("{prefix} {text}"),
    }
}

/// The version in an ETag as `--etag` prints it: `"7"` and `W/"7"` are `7`;
/// no ETag is `-`.
pub fn etag_version(etag: Option<&str>) -> String {
    match etag {
        None => "-".to_string(),
        Some(tag) => {
            let tag = tag.trim();
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag.trim_matches('"').to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_one_line_with_spaces_after_separators() {
        assert_eq!(
            json_line(&json!({"key": "hello", "value": "world"})),
            r#"{"key": "hello", "value": "world"}"#
        );
        assert_eq!(
            json_line(&json!({"key": "k", "value": {"a": [1, 2.5, null, true, {}], "b": []}})),
            r#"{"key": "k", "value": {"a": [1, 2.5, null, true, {}], "b": []}}"#
        );
        assert_eq!(json_line(&json!("multi\nline")), r#""multi\nline""#);
        assert_eq!(json_line(&json!("grüße")), r#""grüße""#);
    }

    #[test]
    fn bodies_that_are_not_json_are_shown_as_received() {
        assert_eq!(body_text("{\"key\":\"k\"}\n"), r#"{"key": "k"}"#);
        assert_eq!(body_text("Method Not Allowed\n\n"), "Method Not Allowed");
        assert_eq!(body_text(""), "");
    }

    #[test]
    fn the_status_goes_in_front() {
        assert_eq!(with_prefix(None, "{}"), "{}");
        assert_eq!(
            with_prefix(Some("200"), r#"{"key": "hello", "value": "world"}"#),
            r#"200 {"key": "hello", "value": "world"}"#
        );
        assert_eq!(with_prefix(Some("405"), ""), "405");
        assert_eq!(with_prefix(Some("200"), "a\nb"), "200\na\nb");
        assert_eq!(with_prefix(Some("200 7"), "{}"), "200 7 {}");
    }

    #[test]
    fn etags_print_as_their_version() {
        assert_eq!(etag_version(Some("\"7\"")), "7");
        assert_eq!(etag_version(Some("W/\"12\"")), "12");
        assert_eq!(etag_version(None), "-");
    }
}
